from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(ignore_result=True)
def prune_task_records(max_age_days: int | None = None) -> int:
    return services.prune_task_records(max_age_days)
