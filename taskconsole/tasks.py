from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(ignore_result=True)
def prune_task_records(max_age_days: int | None = None) -> int:
    return services.prune_task_records(max_age_days)


@shared_task(ignore_result=True)
def sweep_lost_tasks() -> int:
    """Fail the records left running by workers that are gone (taskconsole.lost.sweep), and
    those queued whose message no queue or worker holds (taskconsole.vanished.sweep)."""
    from . import lost, vanished

    return lost.sweep() + vanished.sweep()
