"""System checks: a bad PAGES_* setting is reported at start-up, not at the first fetch."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register


@register()
def check_limits(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for name in ("PAGES_CONNECT_TIMEOUT", "PAGES_READ_TIMEOUT", "PAGES_MAX_BYTES"):
        value = getattr(settings, name, None)
        if not isinstance(value, int | float) or value <= 0:
            errors.append(
                Error(f"{name} must be a positive number, not {value!r}.", id="pages.E001")
            )
    redirects = getattr(settings, "PAGES_MAX_REDIRECTS", None)
    if not isinstance(redirects, int) or redirects < 0:
        errors.append(
            Error(
                f"PAGES_MAX_REDIRECTS must be zero or a positive integer, not {redirects!r}.",
                id="pages.E002",
            )
        )
    return errors


@register(Tags.security, deploy=True)
def check_private_addresses(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if getattr(settings, "PAGES_ALLOW_PRIVATE_ADDRESSES", False):
        return [
            Warning(
                "PAGES_ALLOW_PRIVATE_ADDRESSES is on: submitted URLs can reach the internal "
                "network (loopback, private and link-local addresses).",
                hint="Turn it off in production unless fetching intranet pages is intended.",
                id="pages.W001",
            )
        ]
    return []
