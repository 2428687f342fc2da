"""Tasks whose worker was killed while they ran: failed when that worker starts again.

A worker stopped outright (SIGKILL, the OOM killer, a lost machine) writes nothing more about
the tasks it was running, so their records said STARTED for ever: not finished, so neither
cancel nor retry applied. When a worker starts, the records it left running before it started
are marked FAILURE ("Lost: ..."), for the tasks whose message was acknowledged on receipt
(Celery's default, and the product's at-most-once policy): nothing will run them again, and
the console can now retry them. A task acknowledged late (acks_late) is left alone: its message
goes back to the queue and a worker runs it again, which moves the record on.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from celery import current_app, signals
from django.db import DatabaseError
from django.utils import timezone

from .models import LOST, RUNNING_STATES, TaskRecord, TaskStatus

logger = logging.getLogger(__name__)
_started_at: datetime | None = None


def on_worker_init(**_: Any) -> None:
    global _started_at
    _started_at = timezone.now()


def on_worker_ready(sender: Any = None, **_: Any) -> None:
    hostname = getattr(sender, "hostname", None)
    if not hostname or _started_at is None:
        return
    try:
        failed = fail_left_running(hostname, _started_at)
    except DatabaseError as exc:
        logger.warning("Could not look for tasks lost by %s's last run: %s", hostname, exc)
        return
    if failed:
        logger.warning("%d task(s) left running by %s's last run marked lost", failed, hostname)


def fail_left_running(hostname: str, started_at: datetime) -> int:
    """Fail the records `hostname` left running before `started_at`; returns how many."""
    left = TaskRecord.objects.filter(
        worker=hostname, status__in=RUNNING_STATES, started_at__lt=started_at
    ).values_list("pk", "name")
    lost = [pk for pk, name in left if not _delivered_again(name)]
    if not lost:
        return 0
    return TaskRecord.objects.filter(pk__in=lost, status__in=RUNNING_STATES).update(
        status=TaskStatus.FAILURE, exception=LOST, finished_at=timezone.now()
    )


def _delivered_again(name: str) -> bool:
    task = current_app.tasks.get(name)
    return bool(task is not None and task.acks_late)


def connect() -> None:
    signals.worker_init.connect(on_worker_init, weak=False, dispatch_uid="tc_lost_init")
    signals.worker_ready.connect(on_worker_ready, weak=False, dispatch_uid="tc_lost_ready")
