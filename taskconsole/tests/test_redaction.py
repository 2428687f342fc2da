from __future__ import annotations

import pytest
from django.test import override_settings

from taskconsole import redaction
from taskconsole.redaction import REDACTED, redact, redact_result, redact_text


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "db_password",
        "api_token",
        "apiKey",
        "api_key",
        "key",
        "Authorization",
        "x-auth-token",
        "clientSecret",
        "session_id",
        "signature",
        "passphrase",
        "accessKey",
        "aws_access_key_id",
        "signingKey",
        "encryption_key",
        "dsn",
        "sentry_dsn",
    ],
)
def test_secret_looking_keys_are_redacted(key: str) -> None:
    value, hit = redact({key: "s3cret", "nested": [{key: "s3cret"}]})
    assert hit
    assert value == {key: REDACTED, "nested": [{key: REDACTED}]}


@pytest.mark.parametrize("key", ["author_id", "monkey", "keyboard", "passage", "value", "x"])
def test_ordinary_keys_are_kept(key: str) -> None:
    assert redact({key: 7}) == ({key: 7}, False)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgres://app:PW-1@db.internal/prod", "postgres://app:********@db.internal/prod"),
        ("redis://:PW-2@cache:6379/0", "redis://:********@cache:6379/0"),
        ("see https://bot:PW-3@api.example.com/x", "see https://bot:********@api.example.com/x"),
        # A password may hold an @: hidden up to the host.
        ("postgres://app:p@ss@db/prod", "postgres://app:********@db/prod"),
        # Glued to what comes before it (a flag, a digit).
        ("-dpostgres://u:PW-4@h/db", "-dpostgres://u:********@h/db"),
        ("1redis://:PW-5@h/", "1redis://:********@h/"),
    ],
)
def test_a_password_in_a_url_is_hidden_wherever_it_is(url: str, shown: str) -> None:
    # Positional arguments have no key to go by: the URL itself gives the password away.
    assert redact([url, {"target": url}]) == ([shown, {"target": shown}], True)


@pytest.mark.parametrize(
    "url",
    ["https://example.com/a:b@c", "https://user@example.com/", "mailto:someone@example.com"],
)
def test_urls_without_a_password_are_kept(url: str) -> None:
    assert redact([url]) == ([url], False)


# Secrets written with their key inside a string (an argument, an exception's message, a
# traceback, a result's repr): `password=…`, `token: …`, `"api_key": "…"`.


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("password=hunter2", "password=********"),
        ("db host=x password=PW-1 dbname=y", "db host=x password=******** dbname=y"),
        # libpq: a quoted value may hold spaces; the quotes are kept.
        ("host=db password='p w 2' port=5432", "host=db password='********' port=5432"),
        ("api_key=AK-3 ", "api_key=******** "),
        ("API_KEY = AK-4", "API_KEY = ********"),
        ("token: TOK-5", "token: ********"),
        ("X-Auth-Token: TOK-6", "X-Auth-Token: ********"),
        ("Authorization: Bearer abc.def", "Authorization: Bearer ********"),
        ("--password=PW-7 --user=bob", "--password=******** --user=bob"),
        (
            "https://api.example.com/x?api_key=AK-8&page=2",
            "https://api.example.com/x?api_key=********&page=2",
        ),
        # JSON and Python reprs of dicts: quoted keys and values.
        ('{"token": "TOK 9", "n": 1}', '{"token": "********", "n": 1}'),
        (
            "{'client_secret': 'S-10', 'user': 'bob'}",
            "{'client_secret': '********', 'user': 'bob'}",
        ),
        ("{'password': 'it\\'s'}", "{'password': '********'}"),
        # An exception's message, as Celery and the console print it: the closing quote stays.
        (
            "ValueError(\"Field 'id' expected a number but got 'password=PW-11'.\")",
            "ValueError(\"Field 'id' expected a number but got 'password=********'.\")",
        ),
        # The rest of the word goes, commas included: a password may hold one.
        ("password=a,b;c", "password=********"),
        # Both rules in one text.
        (
            "dsn=postgres://u:PW-12@h/db and postgres://u:PW-13@h/db",
            "dsn=******** and postgres://u:********@h/db",
        ),
        # A weak word as a whole part of the key, as for dict keys.
        ("session_key=abc", "session_key=********"),
        ("Missing key: user_id", "Missing key: ********"),
    ],
)
def test_secret_key_value_pairs_in_text_are_hidden(text: str, shown: str) -> None:
    assert redact_text(text) == shown
    assert redact([text]) == ([shown], True)


@pytest.mark.parametrize(
    "text",
    [
        "x=1",
        "a=b, c: d",
        # The key is the word before the separator: `count`, not `token`.
        "token count: 5",
        "tokens used 5",
        # An exception's name is not a key, nor is a key's name in its message.
        "KeyError: 'token'",
        "TokenError: invalid token",
        "ValueError: Field 'id' expected a number but got 'abc'.",
        # Words that only hold a weak one, as for dict keys.
        "author_id=5 monkey=3 keyboard: x passage: y",
        "sessions: 3",
        # A broker's or a database's key, not a secret.
        "routing_key=default primary_key=5 'binding_key': 'q'",
        # No value to hide.
        "password=",
        "password: ",
        "https://example.com:8080/path?page=2",
        'Traceback (most recent call last):\n  File "t.py", line 3, in run\nValueError: no',
    ],
)
def test_text_without_a_secret_is_kept(text: str) -> None:
    assert redact_text(text) == text
    assert redact([text]) == ([text], False)


@pytest.mark.parametrize("key", ["password", "api_token", "apiKey", "sessionid", "dsn", "auth"])
def test_every_key_word_gets_past_the_quick_check(key: str) -> None:
    assert redact_text(f"{key}=S-1") == f"{key}=********"
    assert redact_text(f'"{key}": "S-1"') == f'"{key}": "********"'


def test_common_text_is_returned_without_running_a_regex(monkeypatch) -> None:
    """The worker redacts every task's result, log line and event: plain substring tests
    answer for text without `://`, without `=` or `:`, or without any key word."""

    class Unused:
        def __getattr__(self, name):
            raise AssertionError("a regex ran")

    monkeypatch.setattr(redaction, "KEY_AND_SEPARATOR", Unused())
    monkeypatch.setattr(redaction, "URL_PASSWORD", Unused())
    for text in ["None", "'ok'", "42", "x=1", "{'value': 7}", "ValueError: no such row"]:
        assert redact_text(text) is text


@override_settings(TASKCONSOLE_SECRET_KEYS=r"^pin$")
def test_a_projects_own_key_pattern_is_used_in_text_too() -> None:
    assert redact_text("pin=1234 password=kept") == "pin=******** password=kept"


def test_a_result_is_redacted_by_its_type_and_kept_when_nothing_is_secret() -> None:
    for value in (None, 7, 1.5, True, "plain", [1, "a"], {"n": 1}, ()):
        assert redact_result(value) is value
    assert redact_result("postgres://u:PW@h/x") == "postgres://u:********@h/x"
    assert redact_result(["x", "token=T"]) == ["x", "token=********"]
    assert redact_result({"api_key": "AK", "n": 1}) == {"api_key": REDACTED, "n": 1}
    obj = object()
    assert redact_result(obj) is obj


def test_a_result_keeps_its_shape_and_what_is_no_secret() -> None:
    """Programs read a result back (AsyncResult, a chord's callback): deep values, numbers
    under secret-looking keys and a broker's or database's keys are left as they are."""
    polygon = {"type": "MultiPolygon", "coordinates": [[[[1.5, 2.5], [3.5, 4.5]]]]}
    deep = {"type": "FeatureCollection", "features": [{"geometry": polygon}]}
    assert redact_result(deep) is deep
    stats = {"session_count": 3, "primary_key": 7, "routing_key": "q", "cache_key": "c"}
    assert redact_result(stats) is stats
    mixed = {"token": "abc", "token_ttl": 60, "nested": [{"password": "pw"}]}
    assert redact_result(mixed) == {
        "token": "********",
        "token_ttl": 60,
        "nested": [{"password": "********"}],
    }
    # Arguments are shown and replayed: a value past the depth looked into is hidden whole.
    nine_deep: list = ["x"]
    for _ in range(8):
        nine_deep = [nine_deep]
    hidden, hit = redact(nine_deep)
    assert hit
    assert REDACTED in repr(hidden)
    assert "'x'" not in repr(hidden)


def test_a_megabyte_of_html_is_looked_through_once() -> None:
    """Attributes (href=, class=) and URLs are not each a regex tried at every character."""
    row = '<a class="c" href="https://example.com/p?id={i}&page=2" data-key="{i}">x: {i}</a>\n'
    page = "".join(row.format(i=i) for i in range(12000))
    page += "<script>var apiKey = 'SECRET'; fetch('https://u:PW@example.com/')</script>"
    hidden = redact_result(page)
    assert "SECRET" not in hidden
    assert "PW@" not in hidden
    assert "https://u:********@example.com/" in hidden
    # Only the pairs whose key holds a key word are looked at.
    assert len(redaction._hints(page)) == 12001
