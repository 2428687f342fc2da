from __future__ import annotations

import pytest

from taskconsole.redaction import REDACTED, redact


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
