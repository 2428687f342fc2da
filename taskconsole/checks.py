"""System checks: misconfiguration is reported by `manage.py check`, not at first use."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from .conf import has_beat


@checks.register()
def check_console(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from celery import current_app

    from . import registry

    messages: list[checks.CheckMessage] = []
    if not has_beat():
        messages.append(
            checks.Warning(
                "django_celery_beat is not installed: the periodic tasks page will be empty.",
                id="taskconsole.W001",
            )
        )
    known = set(current_app.tasks.keys())
    for item in registry.all_launchables():
        if item.name.startswith("celery."):
            messages.append(
                checks.Error(
                    f"{item.name} is a Celery built-in and may not be on the launch list.",
                    id="taskconsole.E001",
                )
            )
        elif item.name not in known:
            messages.append(
                checks.Warning(
                    f"{item.name} is on the launch list but no Celery task has that name.",
                    hint="Check the name in the app's console.py, or that its tasks are imported.",
                    id="taskconsole.W002",
                )
            )
    middleware = getattr(settings, "MIDDLEWARE", [])
    name = "taskconsole.middleware.TaskOwnerMiddleware"
    auth = "django.contrib.auth.middleware.AuthenticationMiddleware"
    if (
        name in middleware
        and auth in middleware
        and middleware.index(name) < middleware.index(auth)
    ):
        messages.append(
            checks.Error(
                f"{name} must come after {auth}, or tasks cannot record who launched them.",
                id="taskconsole.E002",
            )
        )
    if name not in middleware:
        messages.append(
            checks.Warning(
                f"{name} is not in MIDDLEWARE: tasks your views publish are recorded as "
                "Code, with no request path or owner, and edits of periodic tasks in the admin "
                "are not audited.",
                hint=f"Add it after {auth}, or silence taskconsole.W003 "
                "(SILENCED_SYSTEM_CHECKS) if you need neither.",
                id="taskconsole.W003",
            )
        )
    interval = getattr(settings, "TASKCONSOLE_PROGRESS_INTERVAL", 0.5)
    if not isinstance(interval, int | float) or interval < 0:
        messages.append(
            checks.Error(
                "TASKCONSOLE_PROGRESS_INTERVAL must be a number >= 0.", id="taskconsole.E003"
            )
        )
    return messages
