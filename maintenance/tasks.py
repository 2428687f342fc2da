"""Thin tasks over maintenance/services.py: each holds only its time limits.

They go to the `default` queue (CELERY_TASK_DEFAULT_QUEUE; no route sends them elsewhere).

Beat sends them with no arguments (the run row is made by the task); a person starting one
from the page or the admin passes the id of the run row queued for them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import Task, shared_task

from . import services
from .models import Job


def run(task: Task, job: Job, run_id: int | None) -> dict[str, Any]:
    maintenance_run = services.run_job(
        job,
        run_id=run_id,
        task_id=task.request.id or "",
        lost_after=timedelta(seconds=task.time_limit),
    )
    return {
        "run_id": maintenance_run.pk,
        "status": maintenance_run.status,
        "summary": maintenance_run.summary,
    }


# Time limits live here, on the decorators: Celery stamps them into each message as it is
# published, by beat or by the web process alike.
@shared_task(bind=True, soft_time_limit=240, time_limit=300)
def clear_expired(self: Task, run_id: int | None = None) -> dict[str, Any]:
    return run(self, Job.CLEAR_EXPIRED, run_id)


@shared_task(bind=True, soft_time_limit=25 * 60, time_limit=30 * 60)
def backup_database(self: Task, run_id: int | None = None) -> dict[str, Any]:
    return run(self, Job.BACKUP_DATABASE, run_id)


@shared_task(bind=True, soft_time_limit=25 * 60, time_limit=30 * 60)
def prune_results(self: Task, run_id: int | None = None) -> dict[str, Any]:
    return run(self, Job.PRUNE_RESULTS, run_id)


TASKS: dict[Job, Task] = {
    Job.CLEAR_EXPIRED: clear_expired,
    Job.BACKUP_DATABASE: backup_database,
    Job.PRUNE_RESULTS: prune_results,
}
