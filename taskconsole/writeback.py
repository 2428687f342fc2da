"""A worker's writes about the tasks it runs, collected and written together across tasks.

A worker writes, for every task, its record's STARTED state before the body runs and its
outcome after (and django-celery-results does the same for the result, see
reliability.results). Each would be its own statement and commit; for tiny tasks those commits,
not the broker, bound how many tasks a worker runs per second. In a worker process they are
deferred instead: kept per task (a task's STARTED and its outcome merge into one write when both
are waiting) and written by a daemon thread every TASKCONSOLE_WORKER_WRITE_INTERVAL seconds
(0.05 by default), all kinds in one transaction, so a result and the console's record of it
become visible together.

The price, on purpose: a task's result is stored up to that interval after it finished, and a
worker process killed outright (SIGKILL, out of memory) loses the outcomes it had not written.
With the database unreachable the thread waits and retries (TASKCONSOLE_FINISH_RETRY_SECONDS at a
time, then every RETRY_KEPT seconds, for as long as it takes) and the worker's tasks wait with it
once TASKCONSOLE_WORKER_WRITE_SIZE writes are waiting.
TASKCONSOLE_WORKER_WRITE_BEHIND = False writes each one at once, as before.

Outside a worker, in eager mode (CELERY_TASK_ALWAYS_EAGER, `apply()`) and for a task's own
synchronous writes (see `settle`), nothing is deferred.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import signals
from django.db import InterfaceError, OperationalError, transaction
from django.db import router as db_router

from .buffer import Batcher, clock
from .conf import setting
from .dbwait import waiting_for_database
from .models import TaskRecord

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL = 0.05
DEFAULT_SIZE = 2000
#: Seconds between tries of the outcomes kept while the database was away.
RETRY_KEPT = 5.0


@dataclass(frozen=True)
class Kind:
    """One kind of deferred write: how two writes for the same key merge, how a batch is written."""

    merge: Callable[[Any, Any], Any]
    write: Callable[[Any], None]
    prepare: Callable[[list[tuple[str, Any]]], Any]


_kinds: dict[str, Kind] = {}


def register(
    name: str,
    merge: Callable[[Any, Any], Any],
    write: Callable[[Any], None],
    prepare: Callable[[list[tuple[str, Any]]], Any],
) -> None:
    """Declare a kind of write.

    `prepare(entries)` gets [(key, payload), ...] in arrival order and returns what `write` is
    given inside the transaction. The Python work of a batch (encoding results, preparing
    parameters) belongs in `prepare`: on SQLite the transaction holds the database's only
    write lock, which every task's claim waits for.
    """
    _kinds[name] = Kind(merge, write, prepare)


def enabled() -> bool:
    return bool(setting("TASKCONSOLE_WORKER_WRITE_BEHIND", True))


class WorkerWrites(Batcher):
    """The deferred writes of this worker process, one per (kind, key), merged as they come."""

    thread_name = "taskconsole-worker-writes"

    def _clear(self) -> None:
        self._entries: dict[tuple[str, str], Any] = {}

    def _keep(self, entries: list[tuple[str, str, Any]]) -> int:
        for kind, key, payload in entries:
            slot = (kind, key)
            earlier = self._entries.get(slot)
            self._entries[slot] = (
                payload if earlier is None else _kinds[kind].merge(earlier, payload)
            )
        return len(self._entries)

    def _take_all(self) -> dict[tuple[str, str], Any]:
        entries, self._entries = self._entries, {}
        return entries

    def interval(self) -> float:
        return float(setting("TASKCONSOLE_WORKER_WRITE_INTERVAL", DEFAULT_INTERVAL))

    def max_size(self) -> int:
        return int(setting("TASKCONSOLE_WORKER_WRITE_SIZE", DEFAULT_SIZE))

    def holds(self, key: str) -> bool:
        if self._pid != os.getpid():
            return False
        with self._lock:
            return any(slot[1] == key for slot in self._entries)

    def _write(self, entries: dict[tuple[str, str], Any]) -> int:
        try:
            # The database went away: the outcomes wait for it rather than be lost.
            waiting_for_database(
                lambda: write_all(entries),
                seconds=float(setting("TASKCONSOLE_FINISH_RETRY_SECONDS", 120)),
                model=TaskRecord,
            )
        except (OperationalError, InterfaceError) as exc:
            # Still away: the outcomes stay in this worker and are tried again every
            # RETRY_KEPT seconds, however long it takes. Dropped, finished tasks read STARTED
            # for ever (their worker answers, so no sweep would fail them as lost).
            self._keep_for_later(entries)
            logger.error(
                "taskconsole: the database is still unreachable (%s): %d task outcomes are kept "
                "in this worker and written once it answers",
                exc,
                len(entries),
            )
            return 0
        except Exception:
            # One bad entry (a constraint, a value the column refuses) must not take the
            # other tasks' writes with it: each is tried on its own.
            return self._write_one_by_one(entries)
        return len(entries)

    def _keep_for_later(self, entries: dict[tuple[str, str], Any]) -> None:
        """Put back a batch that could not be written, under what was deferred since."""
        with self._lock:
            for slot, payload in entries.items():
                newer = self._entries.get(slot)
                merged = payload if newer is None else _kinds[slot[0]].merge(payload, newer)
                self._entries[slot] = merged
            self._size = len(self._entries)
            # Counted from now: older, they would make every new write flush at once in the
            # task's own thread (add_many's rule for a batch its thread failed to write), each
            # waiting for the database; the thread tries them again instead.
            self._oldest = clock()

    def _retry_after(self) -> float | None:
        return RETRY_KEPT if self._size else None

    def _write_one_by_one(self, entries: dict[tuple[str, str], Any]) -> int:
        written = 0
        for slot, payload in entries.items():
            try:
                write_all({slot: payload})
                written += 1
            except Exception:
                logger.exception("taskconsole: could not write %s of task %s", *slot)
        return written


def write_all(entries: dict[tuple[str, str], Any]) -> None:
    """Every kind's batch, in the order the kinds were registered, in one transaction."""
    by_kind: dict[str, list[tuple[str, Any]]] = {name: [] for name in _kinds}
    for (kind, key), payload in entries.items():
        by_kind[kind].append((key, payload))
    prepared = [
        (_kinds[name], _kinds[name].prepare(batch)) for name, batch in by_kind.items() if batch
    ]
    with transaction.atomic(using=db_router.db_for_write(TaskRecord)):
        for kind, work in prepared:
            kind.write(work)


# A prefork parent defers too (revocations, lost workers): buffer's fork hooks, which every
# Batcher is under, give a child forked while the thread writes locks of its own.
_writes = WorkerWrites()
_in_worker = False


def deferring(request: Any) -> bool:
    """Whether this task's writes may wait: in a worker, not eager, and switched on."""
    return _in_worker and not getattr(request, "is_eager", False) and enabled()


def defer(kind: str, key: str, payload: Any) -> None:
    _writes.add_many([(kind, key, payload)])


def settle(key: str | None) -> None:
    """Write what waits for this key now, before a synchronous write about it that must follow.

    Also waits for a batch the thread is writing at this moment, which may hold it.
    """
    if key and _in_worker:
        _writes.flush_if(lambda: _writes.holds(key))


def flush() -> int:
    """Write this process's deferred writes now (shutdown, chords, tests)."""
    return _writes.flush()


def pending() -> int:
    return len(_writes)


def _worker_started(**_: Any) -> None:
    global _in_worker
    _in_worker = True


def _worker_stopping(**_: Any) -> None:
    flush()
    left = pending()
    if left:
        # Kept while the database was away, and it still is: this process ends with them.
        logger.error(
            "taskconsole: the worker stops with %d task outcomes it could not write (the "
            "database is unreachable); those tasks read as running",
            left,
        )


def connect() -> None:
    """Defer in worker processes (prefork children and the main process of the other pools)."""
    signals.worker_process_init.connect(_worker_started, weak=False, dispatch_uid="tc_wb_init")
    signals.worker_init.connect(_worker_started, weak=False, dispatch_uid="tc_wb_main")
    signals.worker_process_shutdown.connect(
        _worker_stopping, weak=False, dispatch_uid="tc_wb_process_shutdown"
    )
    signals.worker_shutdown.connect(_worker_stopping, weak=False, dispatch_uid="tc_wb_shutdown")


__all__ = ["connect", "defer", "deferring", "flush", "pending", "register", "settle"]
