"""Thin tasks over maintenance/services.py: each holds only its time limits.

They go to the `default` queue (CELERY_TASK_DEFAULT_QUEUE; no route sends them elsewhere).

Beat sends them with no arguments (the run row is made by the task); a person starting one
from the page or the admin passes the id of the run row queued for them. The task console
starts run_job_now, which queues that row and the job's task as the page does.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import Task, shared_task
from django.contrib.auth import get_user_model
from django.utils.translation import ngettext

from taskconsole import progress as console_progress
from taskconsole.capture import OWNER_HEADER

from . import services
from .models import Job

logger = logging.getLogger(__name__)


def report_progress(deleted: int, expected: int) -> None:
    """Rows deleted so far, on the task console: throttled there, never fatal here."""
    try:
        console_progress.report(
            deleted,
            expected,
            message=ngettext("%(count)d row deleted", "%(count)d rows deleted", deleted)
            % {"count": deleted},
        )
    except Exception:
        logger.warning("Could not report progress to the task console", exc_info=True)


def run(task: Task, job: Job, run_id: int | None) -> dict[str, Any]:
    maintenance_run = services.run_job(
        job,
        run_id=run_id,
        task_id=task.request.id or "",
        lost_after=timedelta(seconds=task.time_limit),
        report=report_progress,
    )
    if maintenance_run.deleted_count:
        # The last count, past the console's throttle: the run's final figure.
        report_progress(maintenance_run.deleted_count, maintenance_run.deleted_count)
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


@shared_task(bind=True)
def run_job_now(self: Task, job: str) -> dict[str, Any]:
    """Start a job now from the task console, as the page's button does.

    The run row is requested by whoever launched this task; the job's own task is its child.
    """
    # actions imports TASKS from this module.
    from .actions import queue_run

    user_id = getattr(self.request, OWNER_HEADER, None)
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    maintenance_run = queue_run(Job(job), user)
    return {
        "run_id": maintenance_run.pk,
        "job": maintenance_run.job,
        "task_id": maintenance_run.task_id,
    }


TASKS: dict[Job, Task] = {
    Job.CLEAR_EXPIRED: clear_expired,
    Job.BACKUP_DATABASE: backup_database,
    Job.PRUNE_RESULTS: prune_results,
}
