"""Records of tasks whose publish failed: marked failed, so none waits in the console for ever.

The console records a task in Celery's `before_task_publish`, which runs before the message is
serialized and sent. When the send then fails (the broker is down, an argument JSON cannot
carry, a model instance passed instead of its id), the caller gets the error, but the record
would stay QUEUED: a task nobody will run, counted by the readiness check's queue age for ever.
Celery has no signal for a failed publish, so the app's task sender is wrapped: the error still
goes up unchanged, after the records are marked FAILURE, "Not published".
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any

from celery.app.amqp import AMQP
from django.db import connections, router
from django.utils import timezone

from . import buffer
from .models import TaskRecord, TaskStatus

logger = logging.getLogger(__name__)

#: A publisher that sends the same task again when a send fails (an outbox) stamps this header:
#: its record then stays waiting instead of failing, and offers no retry that would run the
#: task twice.
SENT_AGAIN_HEADER = "taskconsole_sent_again"

#: Only a record still waiting is failed: a send that raised after the broker took the message
#: (the connection dropped before its answer) may already have been run by a worker.
_UNSENT_STATES = (TaskStatus.QUEUED, TaskStatus.SCHEDULED)


def unanswered(exc: BaseException | None) -> bool:
    """A send that timed out waiting for the broker's answer (kombu wraps the driver's error).

    Unlike a refused connection, the message may have reached the broker, which runs it once it
    answers again (a stopped Redis reads what waited in its socket when it resumes): whether the
    task was queued is not known.
    """
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, TimeoutError) or type(exc).__name__ == "TimeoutError":
            return True  # the builtin (socket.timeout) or a driver's own (redis-py's)
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def not_published(task_ids: Iterable[str], exc: BaseException) -> None:
    """Mark the waiting records of these tasks failed; a database gone too is only logged.

    Never raises: the caller's own error is what must reach it (it may say which tasks did go
    out, see taskconsole.bulk).
    """
    task_ids = [task_id for task_id in task_ids if task_id]
    if not task_ids:
        return
    if unanswered(exc):
        # Maybe queued after all: a failed record would invite a second launch of a task that
        # then runs. It stays waiting, and the worker's record of it follows if it comes.
        logger.warning(
            "taskconsole: the broker did not answer the send of %s in time; they may still run",
            ", ".join(task_ids),
        )
        return
    try:
        # A record may still be in this process's buffer: the buffer is written first (only
        # when it holds one of these records), then the record failed. Never inside a
        # transaction, which this error may roll back with other requests' entries in it; there
        # the record was saved at once, not buffered.
        if not connections[router.db_for_write(TaskRecord)].in_atomic_block:
            buffer.settle_all(task_ids)
        TaskRecord.objects.filter(task_id__in=task_ids, status__in=_UNSENT_STATES).update(
            status=TaskStatus.FAILURE,
            exception=f"Not published: {type(exc).__name__}: {exc}"[:2000],
            finished_at=timezone.now(),
        )
    except Exception:
        # Any error here (the database is gone too; an async caller, which may not query) is
        # logged: the caller's own error is the one to raise.
        logger.exception(
            "taskconsole: %d tasks were not published, and their records could not be marked "
            "failed: they show as queued",
            len(task_ids),
        )


def _watching(send: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(send)
    def send_task_message(producer: Any, name: str, message: Any, *args: Any, **kwargs: Any):
        try:
            return send(producer, name, message, *args, **kwargs)
        except BaseException as exc:
            headers = getattr(message, "headers", None) or {}
            # A retry republishes a task that has run: its failure is the task's own outcome,
            # which the worker records. A task its publisher sends again stays waiting.
            if not headers.get("retries") and not headers.get(SENT_AGAIN_HEADER):
                not_published([headers.get("id")], exc)
            raise

    send_task_message.taskconsole_watched = True
    return send_task_message


def watch() -> None:
    """Wrap the task sender of every Celery app (the class's factory, so apps made later too)."""
    factory = AMQP._create_task_sender
    if getattr(factory, "taskconsole_watched", False):
        return

    @functools.wraps(factory)
    def _create_task_sender(self: AMQP) -> Callable[..., Any]:
        return _watching(factory(self))

    _create_task_sender.taskconsole_watched = True
    AMQP._create_task_sender = _create_task_sender
