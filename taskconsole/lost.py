"""Tasks whose worker was killed while they ran: failed when that worker starts again, or
when the periodic sweep finds their worker gone for good.

A worker stopped outright (SIGKILL, the OOM killer, a lost machine) writes nothing more about
the tasks it was running, so their records said STARTED for ever: not finished, so neither
cancel nor retry applied. When a worker starts, the records it left running before it started
are marked FAILURE ("Lost: ..."), in the result backend too, for the tasks whose message was
acknowledged on receipt (Celery's default, and the product's at-most-once policy): nothing will
run them again, and a person can now decide to retry them. Such a task may have finished all
the same, in the moment before its worker died whose writes were still waiting
(taskconsole.writeback): the message says so, and the console asks before a retry. A task
acknowledged late (acks_late) is left alone: its message goes back to the queue and a worker
runs it again. So is any task a live worker reports holding (two workers may share a name).

A worker that never comes back under its name (a container replaced by one with a new host
name, a machine retired) is found by `sweep` (taskconsole.tasks.sweep_lost_tasks, run by beat):
the records running for longer than TASKCONSOLE_LOST_AFTER seconds on a worker that has answered
no ping for that long, in sweeps that long apart, while other workers answer, are failed the
same way. A live worker that cannot answer for that long is taken for gone: a solo, eventlet or
gevent worker inside a long blocking task, or a warm shutdown waiting for long tasks (the
worker stops answering before its tasks end). Should such a task finish after all, its outcome
replaces the "Lost" (the worker's write is not guarded against a finished record).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from celery import current_app, signals, states
from celery.backends.base import DisabledBackend
from celery.exceptions import WorkerLostError
from django.conf import settings
from django.core.cache import cache
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
    """Fail the records `hostname` left running before `started_at`; returns how many.

    Not one that a live worker still holds: two workers may share a name (two copies of one
    command line), and the other one's tasks are not lost. Nothing is failed when the workers
    cannot be asked.
    """
    left = {
        task_id: pk
        for pk, task_id, name in TaskRecord.objects.filter(
            worker=hostname, status__in=RUNNING_STATES, started_at__lt=started_at
        ).values_list("pk", "task_id", "name")
        if not _delivered_again(name)
    }
    if not left:
        return 0
    held = held_by_live_workers(list(left))
    if held is None:
        return 0
    return _mark_lost([pk for task_id, pk in left.items() if task_id not in held])


def _mark_lost(pks: list[int]) -> int:
    """Fail the records that still run (a task may have finished meanwhile); how many.

    The result backend is told too: AsyncResult(id), and the admin's task results where they
    are rows, would otherwise say STARTED for ever.
    """
    if not pks:
        return 0
    running = TaskRecord.objects.filter(pk__in=pks, status__in=RUNNING_STATES)
    task_ids = list(running.values_list("task_id", flat=True))
    failed = TaskRecord.objects.filter(task_id__in=task_ids, status__in=RUNNING_STATES).update(
        status=TaskStatus.FAILURE, exception=LOST, finished_at=timezone.now()
    )
    fail_results(task_ids, WorkerLostError(LOST))
    return failed


def fail_results(task_ids: list[str], exc: Exception) -> None:
    """Store FAILURE (exc) as these tasks' results, unless one has finished."""
    backend = current_app.backend
    if isinstance(backend, DisabledBackend):
        return
    for task_id in task_ids:
        try:
            if backend.get_state(task_id) in states.READY_STATES:
                continue
            backend.mark_as_failure(task_id, exc, call_errbacks=False)
        except Exception as error:
            logger.warning("Could not store the task %s's failure: %s", task_id, error)


#: The workers found silent by a sweep, with when they were first found so, between sweeps.
SILENT_KEY = "taskconsole:lost:silent-workers"


def sweep(
    after: float | None = None,
    confirm_after: float = 3.0,
    timeout: float = 2.0,
    now: float | None = None,
) -> int:
    """Fail the records running on workers that are gone; returns how many.

    Only records running for longer than `after` seconds (TASKCONSOLE_LOST_AFTER, 300 by
    default) are looked at, and nothing is broadcast when there are none. A worker is silent
    when it answers neither of two pings `confirm_after` seconds apart while another worker
    answers (with no answer at all, the broker may be at fault, not every worker). It counts
    as gone once it has been silent in sweeps at least `after` seconds apart, with no answer
    from it in any sweep between: a worker reconnecting to its broker, or busy for a moment,
    answers again before that. Silent workers are remembered between sweeps in Django's
    cache, which must be one the workers share (the database cache, Redis...).
    """
    if after is None:
        after = float(getattr(settings, "TASKCONSOLE_LOST_AFTER", 300))
    cutoff = timezone.now() - timedelta(seconds=after)
    stale = [
        (pk, worker)
        for pk, worker, name in TaskRecord.objects.filter(
            status__in=RUNNING_STATES,
            started_at__lt=cutoff,
            # A worker's node name; an eager run (apply(), a shell) stores the bare host name.
            worker__contains="@",
        ).values_list("pk", "worker", "name")
        if not _delivered_again(name)
    ]
    if not stale:
        return 0
    answering = _answering(timeout=timeout)
    if not answering:
        return 0
    silent = {worker for _, worker in stale} - answering
    if silent:
        time.sleep(confirm_after)
        # Asked by name: each of them gets the whole timeout to answer.
        again = _answering(timeout=timeout, destination=sorted(silent))
        if again is None:
            return 0
        silent -= again
    gone = _still_silent(silent, after, time.time() if now is None else now)
    failed = _mark_lost([pk for pk, worker in stale if worker in gone])
    if failed:
        logger.warning(
            "%d task(s) of gone workers (%s) marked lost", failed, ", ".join(sorted(gone))
        )
    return failed


def _still_silent(silent: set[str], after: float, now: float) -> set[str]:
    """The silent workers that were already silent `after` seconds ago; remembers the rest.

    A worker that answered since is forgotten: its silence starts over.
    """
    try:
        first = cache.get(SILENT_KEY) or {}
        first = {worker: since for worker, since in first.items() if worker in silent}
        for worker in silent:
            first.setdefault(worker, now)
        cache.set(SILENT_KEY, first, timeout=max(4 * after, 3600))
    except Exception as exc:
        logger.warning("Could not remember the silent workers: %s", exc)
        return set()
    return {worker for worker, since in first.items() if now - since >= after}


def _answering(timeout: float, destination: list[str] | None = None) -> set[str] | None:
    """The names of the workers that answer a ping; None if the question failed."""
    try:
        inspect = current_app.control.inspect(timeout=timeout, destination=destination)
        return set(inspect.ping() or {})
    except Exception as exc:
        logger.warning("Could not ping the workers: %s", exc)
        return None


def held_by_live_workers(task_ids: list[str]) -> set[str] | None:
    """The ids some worker reports as running or reserved; None if the question failed."""
    asked = ask_workers_holding(task_ids)
    return None if asked is None else asked[0]


def ask_workers_holding(task_ids: list[str]) -> tuple[set[str], set[str]] | None:
    """(the ids some worker reports as running or reserved, the workers that answered); None
    if the question failed."""
    try:
        replies = current_app.control.inspect(timeout=1.0).query_task(*task_ids) or {}
    except Exception as exc:
        logger.warning("Could not ask the workers which tasks they hold: %s", exc)
        return None
    held = {task_id for reply in replies.values() for task_id in (reply or {})}
    return held, set(replies)


def _delivered_again(name: str) -> bool:
    task = current_app.tasks.get(name)
    return bool(task is not None and task.acks_late)


def connect() -> None:
    signals.worker_init.connect(on_worker_init, weak=False, dispatch_uid="tc_lost_init")
    signals.worker_ready.connect(on_worker_ready, weak=False, dispatch_uid="tc_lost_ready")
