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
    ],
)
def test_secret_looking_keys_are_redacted(key: str) -> None:
    value, hit = redact({key: "s3cret", "nested": [{key: "s3cret"}]})
    assert hit
    assert value == {key: REDACTED, "nested": [{key: REDACTED}]}


@pytest.mark.parametrize("key", ["author_id", "monkey", "keyboard", "passage", "value", "x"])
def test_ordinary_keys_are_kept(key: str) -> None:
    assert redact({key: 7}) == ({key: 7}, False)
