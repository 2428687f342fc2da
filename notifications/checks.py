"""System checks: a bad notifications setting is reported at start-up, not at the first send."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    errors = []
    batch_size = getattr(settings, "NOTIFICATIONS_BATCH_SIZE", None)
    if not isinstance(batch_size, int) or batch_size < 1:
        errors.append(
            Error(
                f"NOTIFICATIONS_BATCH_SIZE must be a positive integer, not {batch_size!r}.",
                hint="Set the NOTIFICATIONS_BATCH_SIZE environment variable to e.g. 100.",
                id="notifications.E001",
            )
        )
    countdown = getattr(settings, "NOTIFICATIONS_RETRY_COUNTDOWN", None)
    if not isinstance(countdown, int) or countdown < 0:
        errors.append(
            Error(
                f"NOTIFICATIONS_RETRY_COUNTDOWN must be a whole number of seconds, not "
                f"{countdown!r}.",
                hint="Set the NOTIFICATIONS_RETRY_COUNTDOWN environment variable to e.g. 5.",
                id="notifications.E002",
            )
        )
    return errors
