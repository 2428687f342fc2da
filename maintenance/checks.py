"""System checks: a backup that is bound to fail is reported at start-up, not at 03:00."""

from __future__ import annotations

import shutil

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register
from django.db import DEFAULT_DB_ALIAS, connections


@register(Tags.database)
def check_backups(app_configs=None, **kwargs) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    vendor = connections[DEFAULT_DB_ALIAS].vendor
    if vendor == "postgresql":
        for program in ("pg_dump", "pg_restore"):
            if shutil.which(program) is None:
                messages.append(
                    Warning(
                        f"{program} is not on the PATH: database backups will fail on any "
                        "worker that runs like this process.",
                        hint="Install the PostgreSQL client tools where the workers run.",
                        id="maintenance.W001",
                    )
                )
    elif vendor != "sqlite":
        messages.append(
            Warning(
                f"Database backups support SQLite and PostgreSQL only, not {vendor}.",
                hint="Disable the maintenance.backup-database schedule in the admin.",
                id="maintenance.W002",
            )
        )
    if settings.BACKUP_KEEP < 1:
        messages.append(
            Warning(
                f"BACKUP_KEEP is {settings.BACKUP_KEEP}; the newest backup is always kept, so "
                "it acts as 1.",
                id="maintenance.W003",
            )
        )
    return messages
