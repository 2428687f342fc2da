from __future__ import annotations

from django.db import transaction
from django_celery_beat.models import PeriodicTask, PeriodicTasks


def reset_last_run() -> int:
    """Forget every periodic task's last run, so schedules restart from the current time zone.

    QuerySet.update() sends no signals, so beat's change marker is bumped by hand.
    """
    with transaction.atomic():
        count = PeriodicTask.objects.update(last_run_at=None)
        PeriodicTasks.update_changed()
    return count
