"""The product's periodic schedules, defined in code and written to django-celery-beat's tables.

`manage.py sync_schedules` (run by `make run` and in every deployment, after `migrate`) writes
SCHEDULES into the PeriodicTask table, so every environment runs the same jobs at the same
times, and beat's DatabaseScheduler picks them up like any added in the admin.

Who owns what, once a schedule is in the database:
- The code owns the task, its schedule, args, kwargs, description and expiry. A change made to
  those in the admin is put back at the next sync: change them here instead.
- The admin owns `enabled`. A schedule switched off (or on) in the admin stays so across syncs
  and deployments; `enabled` below only applies when the schedule is first created.
  `sync_schedules --reset` puts every schedule back to the code's `enabled` as well.
- A PeriodicTask named with SCHEDULE_PREFIX that is no longer in SCHEDULES is deleted, so a
  schedule removed from the code stops running everywhere. Other periodic tasks (the ones in
  CELERY_BEAT_SCHEDULE, or added in the admin) are never touched.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

SCHEDULE_PREFIX = "maintenance."
"""Every schedule defined here is named with this prefix; sync owns the PeriodicTasks that are."""


@dataclass(frozen=True)
class Crontab:
    """Run at the times matching these cron fields, in settings.TIME_ZONE."""

    minute: str = "*"
    hour: str = "*"
    day_of_week: str = "*"
    day_of_month: str = "*"
    month_of_year: str = "*"


@dataclass(frozen=True)
class Interval:
    """Run every `every` periods, counted from the last run."""

    every: int
    period: Literal["days", "hours", "minutes", "seconds"]


@dataclass(frozen=True)
class Schedule:
    name: str
    """The PeriodicTask's unique name; starts with SCHEDULE_PREFIX."""
    task: str
    """The registered name of the Celery task to send."""
    schedule: Crontab | Interval
    args: tuple[Any, ...] = ()
    """Positional arguments for the task (JSON-serialisable)."""
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments for the task (JSON-serialisable)."""
    description: str | Promise = ""
    """Shown in the admin, beside the task."""
    enabled: bool = True
    """Whether the schedule starts enabled; after that, the admin decides."""
    expire_seconds: int | None = None
    """A run not started within this many seconds is dropped, so runs missed while the workers
    were down do not all start at once when they come back."""

    def __post_init__(self) -> None:
        if not self.name.startswith(SCHEDULE_PREFIX):
            raise ValueError(f"Schedule names start with {SCHEDULE_PREFIX!r}: {self.name!r}")


SCHEDULES: tuple[Schedule, ...] = (
    Schedule(
        name="maintenance.clear-expired",
        task="maintenance.tasks.clear_expired",
        schedule=Interval(every=1, period="hours"),
        description=_("Hourly: delete expired sessions and expired database cache entries."),
        expire_seconds=50 * 60,
    ),
    Schedule(
        name="maintenance.backup-database",
        task="maintenance.tasks.backup_database",
        schedule=Crontab(minute="0", hour="3"),
        description=_(
            "Daily at 03:00: back up the database to BACKUP_DIR, verify the backup and keep the "
            "newest BACKUP_KEEP."
        ),
        expire_seconds=6 * 3600,
    ),
    Schedule(
        name="maintenance.prune-task-results",
        task="maintenance.tasks.prune_results",
        schedule=Crontab(minute="30", hour="4"),
        description=_(
            "Daily at 04:30: delete task results older than RESULTS_MAX_AGE_DAYS and finished "
            "task console records older than TASKCONSOLE_MAX_AGE_DAYS, in batches of "
            "PRUNE_BATCH_SIZE."
        ),
        expire_seconds=6 * 3600,
    ),
)


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: dict[str, list[str]] = field(default_factory=dict)
    """Name -> the fields that were put back to the code's values."""
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deleted)


def interval_row(interval: Interval) -> IntervalSchedule:
    # No unique constraint on these tables: the admin may have made duplicates, so take the
    # first match instead of get_or_create's MultipleObjectsReturned.
    row = (
        IntervalSchedule.objects.filter(every=interval.every, period=interval.period)
        .order_by("pk")
        .first()
    )
    return row or IntervalSchedule.objects.create(every=interval.every, period=interval.period)


def crontab_row(crontab: Crontab) -> CrontabSchedule:
    # The crontab runs in the product's time zone (the tutorial's Asia/Shanghai), not UTC.
    spec = {
        "minute": crontab.minute,
        "hour": crontab.hour,
        "day_of_week": crontab.day_of_week,
        "day_of_month": crontab.day_of_month,
        "month_of_year": crontab.month_of_year,
        "timezone": ZoneInfo(settings.TIME_ZONE),
    }
    row = CrontabSchedule.objects.filter(**spec).order_by("pk").first()
    return row or CrontabSchedule.objects.create(**spec)


def desired_fields(schedule: Schedule) -> dict[str, Any]:
    """The PeriodicTask fields the code owns, with the code's values."""
    is_crontab = isinstance(schedule.schedule, Crontab)
    return {
        "task": schedule.task,
        "interval": None if is_crontab else interval_row(schedule.schedule),
        "crontab": crontab_row(schedule.schedule) if is_crontab else None,
        "solar": None,
        "clocked": None,
        "one_off": False,
        "args": json.dumps(list(schedule.args)),
        "kwargs": json.dumps(dict(schedule.kwargs), sort_keys=True),
        "description": str(schedule.description),
        "expire_seconds": schedule.expire_seconds,
        "expires": None,
    }


def differs(field_name: str, current: Any, wanted: Any) -> bool:
    if field_name in {"args", "kwargs"}:
        # Compare what the JSON means: the admin may have reformatted the same value.
        try:
            return json.loads(current or "null") != json.loads(wanted)
        except ValueError:
            return True
    if field_name in {"interval", "crontab", "solar", "clocked"}:
        return getattr(current, "pk", None) != getattr(wanted, "pk", None)
    return current != wanted


@transaction.atomic
def sync_schedules(schedules: Sequence[Schedule] = SCHEDULES, reset: bool = False) -> SyncReport:
    """Write `schedules` into django-celery-beat's tables; see the module docstring for policy.

    Saves only what differs, so a second run writes nothing and beat is not told to reload.
    """
    report = SyncReport()
    # Descriptions are stored text: one language for them all, whoever runs the sync.
    with translation.override(settings.LANGUAGE_CODE):
        for schedule in schedules:
            wanted = desired_fields(schedule)
            task = PeriodicTask.objects.filter(name=schedule.name).first()
            if task is None:
                PeriodicTask.objects.create(name=schedule.name, enabled=schedule.enabled, **wanted)
                report.created.append(schedule.name)
                continue
            changed = [
                name for name, value in wanted.items() if differs(name, getattr(task, name), value)
            ]
            if reset and task.enabled != schedule.enabled:
                task.enabled = schedule.enabled
                changed.append("enabled")
            if not changed:
                report.unchanged.append(schedule.name)
                continue
            for name in changed:
                if name != "enabled":
                    setattr(task, name, wanted[name])
            if {"interval", "crontab"} & set(changed):
                # As the tutorial does after a time zone change: forget the last run, so the
                # next one is computed from the new schedule.
                task.last_run_at = None
            task.save()
            report.updated[schedule.name] = changed
        names = {schedule.name for schedule in schedules}
        for task in PeriodicTask.objects.filter(name__startswith=SCHEDULE_PREFIX).order_by("name"):
            if task.name not in names:
                # Through the instance, so django-celery-beat's change marker tells beat.
                task.delete()
                report.deleted.append(task.name)
    return report
