"""Redact secret-looking values from task arguments before they are stored."""

from __future__ import annotations

import json
import re
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


def secret_pattern() -> re.Pattern[str]:
    return re.compile(setting("TASKCONSOLE_SECRET_KEYS", DEFAULT_SECRET_PATTERN), re.IGNORECASE)


def redact(value: Any, pattern: re.Pattern[str] | None = None, depth: int = 0) -> tuple[Any, bool]:
    """Return (a copy of value with secret-looking keys' values replaced, whether any was)."""
    pattern = pattern or secret_pattern()
    if depth > MAX_DEPTH:
        return REDACTED, True
    if isinstance(value, dict):
        out, hit = {}, False
        for key, item in value.items():
            if isinstance(key, str) and pattern.search(key):
                out[key] = REDACTED
                hit = True
            else:
                out[key], sub = redact(item, pattern, depth + 1)
                hit = hit or sub
        return out, hit
    if isinstance(value, list | tuple):
        out_list, hit = [], False
        for item in value:
            red, sub = redact(item, pattern, depth + 1)
            out_list.append(red)
            hit = hit or sub
        return out_list, hit
    if isinstance(value, str) and "://" in value:
        hidden, count = URL_PASSWORD.subn(rf"\g<head>{REDACTED}", value)
        return hidden, bool(count)
    return value, False


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
