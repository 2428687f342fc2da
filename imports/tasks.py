"""File batch tasks. CELERY_TASK_ROUTES sends imports.tasks.* to the heavy_tasks queue, so only
workers started with `-Q heavy_tasks` run them and a big import never holds up `default`."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import task_failure

from reliability.delivery import IdempotentTask
from taskconsole import progress as console_progress

from . import services
from .models import ImportFile

logger = logging.getLogger(__name__)

# A file of IMPORTS_MAX_FILE_SIZE (20 MB, some 400,000 CSV rows) takes a minute or two; the soft
# limit leaves ample room and still stops a runaway task cleanly (the file is marked failed),
# the hard limit is the backstop. Both stay under the Redis transport's one-hour visibility
# timeout, past which an unacknowledged (acks_late) message would be delivered a second time
# while the first run is still going.
SOFT_TIME_LIMIT = 15 * 60
TIME_LIMIT = 20 * 60


@shared_task(
    bind=True,
    # IdempotentTask: a second copy (the outbox sweeper's) is skipped once a run finished, and a
    # file that kills its worker every time is set aside after RELIABILITY_MAX_DELIVERIES.
    base=IdempotentTask,
    # The message is acknowledged only once the file is processed, and a worker process that
    # dies mid-file (killed, out of memory) gets the task sent again, at most twice: processing
    # starts over from the stored file, so nothing is lost and nothing is doubled.
    acks_late=True,
    retry_on_worker_lost=True,
    reject_on_worker_lost=True,
    max_retries=2,
    default_retry_delay=5,
    soft_time_limit=SOFT_TIME_LIMIT,
    time_limit=TIME_LIMIT,
)
def process_import_file(self, file_id: int) -> dict[str, Any]:
    def publish(current: int, total: int) -> None:
        # A custom state: AsyncResult(id).state == "PROGRESS", .info == this meta.
        self.update_state(
            state="PROGRESS", meta={"file_id": file_id, "current": current, "total": total}
        )
        # The same numbers on the task console, whose own throttle lets the last one through.
        try:
            console_progress.report(current, total)
        except Exception:
            logger.warning("Could not report progress to the task console", exc_info=True)

    return services.process_file(file_id, task_id=self.request.id, publish=publish)


@shared_task
def reprocess_import_file(file_id: int) -> dict[str, Any]:
    """Re-process a failed file (the admin's action, for the task console).

    The file's new process_import_file task is this task's child. Returns how many files were
    queued: 0 when the file is gone or no longer failed.
    """
    queued = services.reprocess_files(ImportFile.objects.filter(pk=file_id))
    return {"file_id": file_id, "queued": queued}


@task_failure.connect
def record_import_failure(
    sender: Any = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    args: Any = None,
    kwargs: Any = None,
    **extra: Any,
) -> None:
    """Mark the file failed when the task could not: a hard time limit or a lost worker.

    Sent in the worker's main process for those (the child is gone), and in the child for an
    ordinary exception, which process_file has already recorded (then this does nothing).
    """
    if getattr(sender, "name", None) != process_import_file.name:
        return
    file_id = args[0] if args else (kwargs or {}).get("file_id")
    services.fail_unfinished_file(file_id, task_id, exception or RuntimeError())
