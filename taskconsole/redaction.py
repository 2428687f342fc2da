"""Redact secret-looking values before they are stored, logged or shown.

Task arguments go through `redact` (by dict key, and the rules for text in every string);
what a task leaves as text (an exception's message, a traceback, the repr of its result)
through `redact_text`; a task's result through `redact_result`.

The rules for text, wherever a string is:
- a password written into a URL (`scheme://user:password@host`): the password is hidden;
- a secret-looking key written with its value: `password=…`, `token: …`, `"api_key": "…"`,
  `'secret': '…'`, libpq's `host=db password=…`, `Authorization: Bearer …`. The key is one
  word (letters, digits, `_ . -`) that TASKCONSOLE_SECRET_KEYS matches, as for dict keys;
  what follows `=` or `:` is hidden: a quoted value up to its closing quote, otherwise the
  rest of the word (up to a space, or `&` as in a query string), but for the punctuation
  that closes it (`'password=x')` keeps its `')`). Nothing else changes: `x=1`,
  `token count: 5` (the key is `count`), `KeyError: 'token'` (an exception's name is not a key).
"""

from __future__ import annotations

import functools
import json
import re
import string
from collections.abc import Iterator
from typing import Any

from celery.utils.saferepr import saferepr

from .conf import setting

REDACTED = "********"
# Strong words anywhere in the key; weaker ones only as a whole part of it (between _ . - or
# the ends), so api_key and auth are hidden while author_id and monkey are not.
DEFAULT_SECRET_PATTERN = (
    r"password|passwd|passphrase|secret|token|credential"
    r"|(?:api|private|access|signing|encryption|master)_?key"
    r"|(?:^|[_.\-])(?:pass|pwd|key|auth|authorization|signature|cookie|session|sessionid|dsn)"
    r"(?:$|[_.\-])"
)
# A password written into a URL (postgres://user:password@host/db, https://user:pw@host/):
# hidden wherever the URL is, whatever its key, positional arguments included. It runs up to
# the last @ before the host (a password may hold one). A match starts only at the start of a
# run of scheme characters, and takes the whole run (`1postgres://`, `-dpostgres://` too), so a
# long argument costs linear time, not quadratic.
URL_PASSWORD = re.compile(
    r"(?<![a-z0-9+.\-])(?P<head>[a-z0-9+.\-]+://[^/\s:@]*:)[^/\s]+(?=@[^/\s@]*(?:[/\s]|$))",
    re.I,
)
MAX_DEPTH = 6

# A secret-looking key and what separates it from its value: a word not glued to one before it
# (`--password=` counts, `xpassword=` is the word `xpassword`), maybe quoted, then = or :.
KEY_AND_SEPARATOR = re.compile(
    r"""(?<![\w.\-])(?P<q>["']?)(?P<key>[\w.\-]+)(?P=q)[ \t]*[=:][ \t]*"""
)
# The value after it: quoted (escapes included), an HTTP scheme and its credentials, or the rest
# of the word but for the punctuation that closes it.
SECRET_VALUE = re.compile(
    r""""(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'"""
    r"""|(?P<scheme>(?:bearer|basic|token|digest)[ \t]+)?[^\s&]*[^\s&'"(){}\[\],;.]""",
    re.I,
)
# An exception's name before its message (`TokenError: …`) is not a key.
EXCEPTION_NAME = re.compile(r"(?:Error|Exception|Warning)$")
# Names whose "key" is a broker's or a database's, common in messages and logs, not a secret.
PLAIN_KEYS = frozenset(
    {
        "routing_key",
        "binding_key",
        "primary_key",
        "foreign_key",
        "natural_key",
        "sort_key",
        "cache_key",
        "partition_key",
    }
)
# Every word the default key pattern can match holds one of these (lowercase): text without
# any of them (and without = or :) is returned before a regex runs.
DEFAULT_KEY_WORDS = (
    "pass",
    "pwd",
    "secret",
    "token",
    "credential",
    "key",
    "auth",
    "signature",
    "cookie",
    "session",
    "dsn",
)


def secret_pattern() -> re.Pattern[str]:
    return _compiled(setting("TASKCONSOLE_SECRET_KEYS", DEFAULT_SECRET_PATTERN))


@functools.lru_cache(maxsize=8)
def _compiled(source: str) -> re.Pattern[str]:
    return re.compile(source, re.IGNORECASE)


def _may_hold_pair(text: str, pattern: re.Pattern[str]) -> bool:
    """Whether text may hold a secret key and its value: plain substring tests, no regex."""
    if "=" not in text and ":" not in text:
        return False
    if pattern.pattern != DEFAULT_SECRET_PATTERN:
        return True  # a project's own key pattern: its words are not known here
    lowered = text.lower()
    return any(word in lowered for word in DEFAULT_KEY_WORDS)


# After a key word: the rest of its word, maybe a quoted key's closing quote, then = or :.
SEPARATOR_AFTER = re.compile(r"""[\w.\-]*["']?[ \t]*[=:]""")
# Lower case for ASCII letters only: the text keeps its length, so positions carry over.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_WORD_CHARS = "_.-"


def _hints(text: str) -> list[int]:
    """Where a key word followed by its separator starts, in order.

    Plain `str.find` for each word, then a short match after it: a page of HTML (href=,
    class=, style: …) costs a few scans of the text, not a regex tried at every character
    (a case-insensitive alternation of the words took 100 ms a megabyte).
    """
    lowered = text.translate(_ASCII_LOWER)
    found = set()
    for word in DEFAULT_KEY_WORDS:
        at = lowered.find(word)
        while at != -1:
            if SEPARATOR_AFTER.match(lowered, at + len(word)):
                found.add(at)
            at = lowered.find(word, at + 1)
    return sorted(found)


def _pairs(text: str, pattern: re.Pattern[str]) -> Iterator[re.Match[str]]:
    """The key-and-separator matches of text that may name a secret, in order."""
    if pattern.pattern != DEFAULT_SECRET_PATTERN:
        yield from KEY_AND_SEPARATOR.finditer(text)
        return
    for start in _hints(text):
        # Back to the start of the key's word.
        while start and (text[start - 1].isalnum() or text[start - 1] in _WORD_CHARS):
            start -= 1
        # A quoted key ("api_key": …) is matched with its quotes; a quote that only opens a
        # string ('password=…') is not the key's.
        pair = None
        if start and text[start - 1] in "\"'":
            pair = KEY_AND_SEPARATOR.match(text, start - 1)
        pair = pair or KEY_AND_SEPARATOR.match(text, start)
        if pair is not None:
            yield pair


def _hide_url_passwords(text: str) -> tuple[str, int]:
    """URL_PASSWORD's replacement, tried only where a `://` is (not at every character)."""
    parts: list[str] = []
    done = hidden = 0
    at = text.find("://")
    while at != -1:
        start = at
        while start and (text[start - 1].isalnum() or text[start - 1] in "+.-"):
            start -= 1
        match = URL_PASSWORD.match(text, start) if start >= done else None
        if match is not None:
            parts += [text[done : match.start()], match["head"], REDACTED]
            done = match.end()
            hidden += 1
        at = text.find("://", max(at + 3, done))
    if not hidden:
        return text, 0
    parts.append(text[done:])
    return "".join(parts), hidden


def _hide_pairs(text: str, pattern: re.Pattern[str]) -> tuple[str, bool]:
    parts: list[str] = []
    done = 0
    for pair in _pairs(text, pattern):
        key = pair["key"]
        if (
            pair.start() < done
            or not pattern.search(key)
            or EXCEPTION_NAME.search(key)
            or key.lower().lstrip("-") in PLAIN_KEYS
        ):
            continue
        value = SECRET_VALUE.match(text, pair.end())
        if value is None:
            continue
        shown = value.group()
        if shown[0] in "\"'":
            hidden = f"{shown[0]}{REDACTED}{shown[0]}"
        else:
            hidden = f"{value['scheme'] or ''}{REDACTED}"
        parts += [text[done : pair.end()], hidden]
        done = value.end()
    if not parts:
        return text, False
    parts.append(text[done:])
    return "".join(parts), True


def redact_string(text: str, pattern: re.Pattern[str] | None = None) -> tuple[str, bool]:
    """(text with the secrets it holds hidden, whether any was): see the module docstring."""
    hit = False
    if "://" in text:
        text, count = _hide_url_passwords(text)
        hit = bool(count)
    if "=" not in text and ":" not in text:
        return text, hit
    pattern = pattern or secret_pattern()
    if _may_hold_pair(text, pattern):
        text, found = _hide_pairs(text, pattern)
        hit = hit or found
    return text, hit


def redact_text(text: str) -> str:
    """Free text (an exception's message, a traceback, a result's repr), its secrets hidden.

    Costs a few substring tests for text that holds no `://`, `=` or `:` next to a key word.
    """
    return redact_string(text)[0]


def redact_result(value: Any) -> Any:
    """A task's result with its secrets hidden: the same object when none was found.

    A string by the text rules, a list, tuple or dict by `redact` keeping its shape (programs
    read it back: AsyncResult, a chord's callback); anything else (None, a number, an object)
    as it is.
    """
    if isinstance(value, str):
        return redact_string(value)[0]
    if isinstance(value, dict | list | tuple) and value:
        hidden, hit = redact(value, keep_shape=True)
        return hidden if hit else value
    return value


#: How deep a result is looked into (arguments: MAX_DEPTH, past which a value is hidden whole).
MAX_RESULT_DEPTH = 100


def redact(
    value: Any, pattern: re.Pattern[str] | None = None, depth: int = 0, *, keep_shape: bool = False
) -> tuple[Any, bool]:
    """Return (a copy of value with secret-looking keys' values replaced, whether any was).

    Arguments are shown and replayed: past MAX_DEPTH a value is hidden whole. A result
    (`keep_shape`) is read back by programs: it is looked into deeper and left as it is past
    that, and a number, a boolean or None under a secret-looking key stays (`session_count: 3`
    is no secret; a secret is text).
    """
    pattern = pattern or secret_pattern()
    if depth > (MAX_RESULT_DEPTH if keep_shape else MAX_DEPTH):
        return (value, False) if keep_shape else (REDACTED, True)
    if isinstance(value, dict):
        out, hit = {}, False
        for key, item in value.items():
            if _secret_key(key, pattern) and not (keep_shape and _plain_scalar(item)):
                out[key] = REDACTED
                hit = True
            else:
                out[key], sub = redact(item, pattern, depth + 1, keep_shape=keep_shape)
                hit = hit or sub
        return out, hit
    if isinstance(value, list | tuple):
        out_list, hit = [], False
        for item in value:
            red, sub = redact(item, pattern, depth + 1, keep_shape=keep_shape)
            out_list.append(red)
            hit = hit or sub
        return out_list, hit
    if isinstance(value, str):
        return redact_string(value, pattern)
    return value, False


def _secret_key(key: Any, pattern: re.Pattern[str]) -> bool:
    return (
        isinstance(key, str)
        and bool(pattern.search(key))
        and key.lower().lstrip("-") not in PLAIN_KEYS
    )


def _plain_scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float)


def clip_json(value: Any, limit: int) -> Any:
    """value when its JSON fits in limit characters, else a clipped text of it."""
    try:
        text = json.dumps(value, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    else:
        if len(text) <= limit:
            return json.loads(text)
    return {"clipped": text[:limit]}


def clip_text(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def text_of(value: Any, limit: int) -> str:
    """Celery's text form of a task's arguments (argsrepr, kwargsrepr), at most `limit` long.

    JSON-ready arguments repr safely; saferepr (several times slower) only for long ones.
    """
    text = repr(value)
    return text if len(text) <= limit else saferepr(value, limit)
