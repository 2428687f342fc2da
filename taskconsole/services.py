"""Housekeeping: prune old task records in batches (called by the maintenance job)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from .models import FINISHED_STATES, TaskRecord


def prune_task_records(max_age_days: int | None = None, batch_size: int = 5000) -> int:
    """Delete finished records older than max_age_days, batch by batch; returns how many.

    0 (or less) keeps them forever.
    """
    days = (
        max_age_days
        if max_age_days is not None
        else getattr(settings, "TASKCONSOLE_MAX_AGE_DAYS", 30)
    )
    if days <= 0:
        return 0
    cutoff = timezone.now() - timedelta(days=days)
    deleted = 0
    while True:
        ids = list(
            TaskRecord.objects.filter(created_at__lt=cutoff, status__in=FINISHED_STATES)
            .order_by("id")
            .values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            return deleted
        # Retries point at the rows being deleted; SET_NULL keeps them.
        count, _ = TaskRecord.objects.filter(id__in=ids).delete()
        deleted += len(ids) if count else 0
