"""Progress reports from inside a running task, throttled so they cost almost nothing.

    from taskconsole import progress

    for i, item in enumerate(items, 1):
        handle(item)
        progress.report(i, len(items), message=f"{item}")

A report is written at most every TASKCONSOLE_PROGRESS_INTERVAL seconds (0.5 by default), plus
the last one (current >= total). Outside a task it does nothing.
"""

from __future__ import annotations

import logging
import time

from celery import current_task
from django.conf import settings
from django.db import DatabaseError

from .redaction import clip_text

logger = logging.getLogger(__name__)

_last_write: dict[str, float] = {}


def interval() -> float:
    return float(getattr(settings, "TASKCONSOLE_PROGRESS_INTERVAL", 0.5))


def report(current: int, total: int, message: str = "", *, task_id: str | None = None) -> bool:
    """Record progress for the running task. Returns whether this call wrote to the database."""
    if task_id is None:
        task = current_task
        request = getattr(task, "request", None) if task else None
        task_id = getattr(request, "id", None)
        if not task_id or getattr(request, "called_directly", True):
            return False
    now = time.monotonic()
    done = total > 0 and current >= total
    last = _last_write.get(task_id)
    if not done and last is not None and now - last < interval():
        return False
    _last_write[task_id] = now
    if done:
        _last_write.pop(task_id, None)
    if len(_last_write) > 1000:  # a long-lived child must not grow this forever
        _last_write.clear()
    from . import writeback
    from .models import RUNNING_STATES, TaskRecord, TaskStatus

    try:
        # The worker's deferred STARTED goes first, or it would be written over the progress.
        writeback.settle(task_id)
        TaskRecord.objects.filter(task_id=task_id, status__in=RUNNING_STATES).update(
            status=TaskStatus.PROGRESS,
            progress_current=current,
            progress_total=total,
            progress_message=clip_text(str(message), 255),
        )
    except DatabaseError:
        logger.warning("Could not record progress of task %s", task_id, exc_info=True)
        return False
    return True
