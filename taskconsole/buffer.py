"""Publish records buffered per process and written in bulk, off the request path.

A web process that publishes a task would otherwise commit one INSERT per `delay()` before the
view can go on; on SQLite that commit is most of the cost of a dispatch. Records go into a
per-process list instead, and a daemon thread writes them with one bulk INSERT every
TASKCONSOLE_BUFFER_INTERVAL seconds (and at exit, and from the publisher itself when
TASKCONSOLE_BUFFER_SIZE records are waiting, which also bounds the memory a burst can take, or
when the oldest has waited a second longer than the interval).

The INSERT ignores conflicts: when the worker ran the task before the flush, its `task_prerun`
created the row (from the message headers the publisher stamped, so nothing is missing) and
may already have finished it; a late flush must never put it back to QUEUED.

The console's launches put their audit entries here too (add_audit), written in the same
transaction as the records of their batch. Nothing can rebuild an audit entry, so those that
meet a database that is away are kept for the thread to write later (PublishBuffer._kept).
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connections,
    models,
    router,
    transaction,
)

from .conf import setting
from .models import AuditEntry, TaskRecord
from .redaction import clip_json

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL = 0.05
DEFAULT_SIZE = 1000
#: Rows per INSERT statement (fewer where the database takes fewer parameters).
ROWS_PER_INSERT = 100
#: From this many records on, PostgreSQL is given them with COPY (see _copy).
COPY_FROM = 500
#: The longest the thread sleeps without looking at the buffer and the settings again.
STEP = 0.05
#: How late (beyond the interval) the oldest record may be before a publisher writes it itself.
STALE = 1.0
#: How long a fork waits for a batch being written before it goes on without closing.
FORK_WAIT = 10.0
#: Audit entries kept for a database that failed a write, at most, and the pause before the
#: thread tries again.
AUDIT_BACKLOG = 10_000
AUDIT_RETRY = 2.0
clock = time.monotonic


def enabled() -> bool:
    return bool(setting("TASKCONSOLE_BUFFER_PUBLISH", True))


def interval() -> float:
    return float(setting("TASKCONSOLE_BUFFER_INTERVAL", DEFAULT_INTERVAL))


def max_size() -> int:
    return int(setting("TASKCONSOLE_BUFFER_SIZE", DEFAULT_SIZE))


class Batcher:
    """Writes collected in this process and written in batches by a daemon thread.

    Safe across threads and fork. A subclass says how entries are kept (`_keep`, `_take_all`)
    and written (`_write`), and which settings pace it (`interval`, `max_size`).
    """

    thread_name = "taskconsole-batcher"

    def __init__(self) -> None:
        self._reset()
        self._atexit_registered = False
        _batchers.add(self)

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        # One writer at a time, so batches are written in the order they were collected.
        self._flush_lock = threading.Lock()
        self._pending = threading.Event()
        self._size = 0
        self._oldest = 0.0
        self._thread: threading.Thread | None = None
        # The connections the thread wrote through, closed before a fork (see _before_fork).
        self._thread_connections: list[Any] = []
        self._held_for_fork = False
        self._clear()

    def _after_fork(self) -> None:
        # The parent writes what it collected; the child's copy (and the parent's thread,
        # which does not exist here) must not be used.
        self._reset()

    def __len__(self) -> int:
        return self._size

    # What a subclass provides.
    def _clear(self) -> None:
        raise NotImplementedError

    def _keep(self, entries: list[Any]) -> int:
        """Add the entries (the lock is held); returns how many are waiting now."""
        raise NotImplementedError

    def _take_all(self) -> Any:
        raise NotImplementedError

    def _write(self, taken: Any) -> int:
        """Write a batch; returns how many entries it held, or raises (nothing is retried)."""
        raise NotImplementedError

    def interval(self) -> float:
        return DEFAULT_INTERVAL

    def max_size(self) -> int:
        return DEFAULT_SIZE

    def add_many(self, entries: list[Any]) -> None:
        if not entries:
            return
        if self._pid != os.getpid():
            self._after_fork()
        now = clock()
        with self._lock:
            if not self._size:
                self._oldest = now
            self._size = waiting = self._keep(entries)
            if self._thread is None or not self._thread.is_alive():
                self._start()
        if waiting >= self.max_size() or now - self._oldest > STALE + self.interval():
            # A burst writes its own entries, and the batch never outgrows max_size(). So does
            # a process whose thread does not get to run (a server without threads).
            self.flush()
        else:
            self._pending.set()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        if not self._atexit_registered:
            atexit.register(self._flush_at_exit)
            self._atexit_registered = True

    def _retry_after(self) -> float | None:
        """Seconds after which the thread writes again with nothing new collected (None: never)."""
        return None

    def _run(self) -> None:
        while True:
            if not self._pending.wait(self._retry_after()):
                self._pending.set()
            # Collect what the next few milliseconds bring into the same batch. Sliced, so a
            # changed interval applies at once and an explicit flush ends the wait.
            since = time.monotonic()
            while self._pending.is_set() and time.monotonic() - since < self.interval():
                time.sleep(min(STEP, self.interval()))
            if self._pending.is_set():
                # The thread keeps its connection for the life of the process; a failed
                # write closes it, so the next one reconnects.
                self.flush()

    def take(self) -> Any:
        with self._lock:
            taken = self._take_all()
            self._size = 0
            self._pending.clear()
        return taken

    def _flush_at_exit(self) -> None:
        self.flush()

    def flush(self) -> int:
        """Write everything collected now; returns how many entries were written."""
        if self._pid != os.getpid():
            self._after_fork()
            return 0
        with self._flush_lock:
            return self._flush_held()

    def flush_if(self, wanted: Callable[[], bool]) -> int:
        """Flush when `wanted()`, asked after any batch being written has been written."""
        if self._pid != os.getpid():
            self._after_fork()
            return 0
        with self._flush_lock:
            return self._flush_held() if wanted() else 0

    def _flush_held(self) -> int:
        taken = self.take()
        if not taken:
            return 0
        if threading.current_thread() is self._thread:
            # Only a tuning of the thread's connection: whatever stops it (a database that is
            # away fails the write itself, which says so) must not stop the thread.
            try:
                checkpoint_here()
            except Exception:
                logger.debug("taskconsole: wal_autocheckpoint not set", exc_info=True)
            try:
                return self._write(taken)
            finally:
                self._thread_connections = open_connections_here()
        return self._write(taken)

    def close_connections(self) -> None:
        """Close the database connections of this batcher's thread.

        Before a fork, and at the end of a test run (a database with open connections cannot
        be dropped). Waits for a batch being written; the thread reconnects for its next one.
        """
        with self._flush_lock:
            self._close_thread_connections(None)

    def _close_thread_connections(self, vendor: str | None) -> None:
        # The flush lock is held: the thread is not using them, so the calling thread may close
        # them on its behalf.
        kept = []
        for wrapper in self._thread_connections:
            if vendor is not None and wrapper.vendor != vendor:
                kept.append(wrapper)
                continue
            wrapper.inc_thread_sharing()
            try:
                wrapper.close()
            finally:
                wrapper.dec_thread_sharing()
        self._thread_connections = kept

    def _hold_for_fork(self) -> None:
        # Waits for a batch being written, but a write stuck on the database must not hold up
        # the fork for long: then its connection stays open, as it did before.
        self._held_for_fork = self._flush_lock.acquire(timeout=FORK_WAIT)
        if self._held_for_fork:
            _closing(lambda: self._close_thread_connections("sqlite"))

    def _release_after_fork(self) -> None:
        if self._held_for_fork:
            self._held_for_fork = False
            self._flush_lock.release()


_batchers: weakref.WeakSet[Batcher] = weakref.WeakSet()


def open_connections_here() -> list[Any]:
    """This thread's open database connections (Django's are per thread)."""
    return [w for w in connections.all(initialized_only=True) if w.connection is not None]


def close_all_connections() -> None:
    """Close every batcher thread's connections (see Batcher.close_connections)."""
    for batcher in list(_batchers):
        batcher.close_connections()


def _closing(close: Callable[[], None]) -> None:
    # A connection that fails to close must not stop the fork, nor the closing of the others.
    try:
        close()
    except Exception:
        logger.warning(
            "taskconsole: a database connection did not close before fork", exc_info=True
        )


def _before_fork() -> None:
    """Close this process's SQLite connections before it forks.

    SQLite keeps the locks of a database file per process, in bookkeeping shared by every
    connection to it, and its documentation warns against carrying a connection across fork().
    A child forked while one of the parent's connections is in the middle of a write inherits
    the note that the write lock is taken, but not the lock: every write the child tries then
    finds the database locked, for good. A Celery prefork parent on SQLite writes: it records a
    lost worker's failure and a revocation through these batchers' threads, and forks the
    replacement child meanwhile. So before any fork the batchers finish the batch they are
    writing and close their threads' SQLite connections, and the forking thread closes its own
    (outside a transaction: one cannot be closed). Each reconnects when it next writes.
    PostgreSQL connections stay open: a child does not share them (Celery's Django fix-up drops
    the inherited ones).
    """
    # Holding the batchers buys nothing elsewhere, and a write waiting out a database outage
    # would hold up the fork.
    if connections[router.db_for_write(TaskRecord)].vendor == "sqlite":
        for batcher in list(_batchers):
            batcher._hold_for_fork()
    for wrapper in open_connections_here():
        if wrapper.vendor == "sqlite" and not wrapper.in_atomic_block:
            _closing(wrapper.close)


def _after_fork_in_parent() -> None:
    for batcher in list(_batchers):
        batcher._release_after_fork()


def _after_fork_in_child() -> None:
    # The parent held the batchers' locks across the fork (or their threads did).
    for batcher in list(_batchers):
        batcher._after_fork()


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)


_checkpointing = threading.local()


def checkpoint_here() -> None:
    """On SQLite, let this thread's commits copy the WAL back into the database.

    That copy waits for the disk. A project can keep it out of requests and task starts by
    setting a high wal_autocheckpoint on its connections (see myproject/settings.py): a
    background writer, which commits every few milliseconds anyway, takes SQLite's default.
    """
    connection = connections[router.db_for_write(TaskRecord)]
    if connection.vendor != "sqlite":
        return
    connection.ensure_connection()
    if getattr(_checkpointing, "connection", None) is not connection.connection:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_autocheckpoint=1000")
        _checkpointing.connection = connection.connection


class PublishBuffer(Batcher):
    """The publish records of this process waiting to be written, and the console's audit
    entries of the launches that published them (see add_audit)."""

    thread_name = "taskconsole-publish-buffer"

    def _clear(self) -> None:
        self._records: list[dict[str, Any] | Audit] = []
        # Audit entries a write failed to store: written before anything newer, and counted
        # by neither the size nor the age that make a publisher write the buffer itself, so
        # requests do not wait for a database that is away.
        self._kept: list[Audit] = []
        self._exiting = False

    def _keep(self, entries: list[dict[str, Any] | Audit]) -> int:
        self._records.extend(entries)
        return len(self._records)

    def _take_all(self) -> list[dict[str, Any] | Audit]:
        taken = [*self._kept, *self._records]
        self._kept, self._records = [], []
        return taken

    def interval(self) -> float:
        return interval()

    def max_size(self) -> int:
        return max_size()

    def _retry_after(self) -> float | None:
        return AUDIT_RETRY if self._kept else None

    def add(self, fields: dict[str, Any]) -> None:
        self.add_many([fields])

    def holds(self, task_id: str) -> bool:
        return self.holds_any({task_id})

    def holds_any(self, task_ids: set[str]) -> bool:
        with self._lock:
            return any(isinstance(e, dict) and e.get("task_id") in task_ids for e in self._records)

    def kept(self) -> int:
        return len(self._kept)

    def _write(self, taken: list[dict[str, Any] | Audit]) -> int:
        records = [entry for entry in taken if isinstance(entry, dict)]
        audits = [entry for entry in taken if isinstance(entry, Audit)]
        try:
            self._write_once_more(records, audits)
        except (IntegrityError, DataError) as exc:
            # Something in the batch itself (a user deleted since the launch): whatever can be
            # written still is.
            logger.warning("taskconsole: a batch of publish records was refused: %s", exc)
            return self._write_apart(records, audits)
        except DatabaseError:
            # The database is away, read-only (a failover) or not migrated. The records are
            # not lost for good: the worker's task_prerun creates the row of any task it runs,
            # from what the publisher stamped on the message. Nothing can rebuild an audit
            # entry: those wait for it to answer again.
            logger.exception(
                "taskconsole: could not write %d publish records and %d audit entries",
                len(records),
                len(audits),
            )
            self._keep_for_later(audits)
            return 0
        except Exception:
            logger.exception("taskconsole: could not write a batch of publish records")
            return self._write_apart(records, audits)
        return len(taken)

    def _write_apart(self, records: list[dict[str, Any]], audits: list[Audit]) -> int:
        """A refused batch, written piece by piece: returns how many entries were written.

        A user deleted since the publish is the usual cause: the row is then kept without
        them, as the foreign key's SET_NULL would have left it. A database that goes away
        meanwhile keeps the audit entries not written yet.
        """
        written = 0
        left = list(audits)
        try:
            for fields in records:
                tries = [fields]
                if fields.get("owner_id"):
                    tries.append({**fields, "owner_id": None})
                if _first_that_writes(tries, lambda f: write([f])):
                    written += 1
                else:
                    logger.error("taskconsole: publish record refused: %s", fields.get("task_id"))
            while left:
                audit = left[0]
                tries = [audit.entry()]
                if audit.user_id is not None:
                    tries.append(audit.entry(with_user=False))
                if _first_that_writes(tries, lambda entry: _insert_audits([entry])):
                    written += 1
                else:
                    logger.error("taskconsole: audit entry refused: %s", audit)
                left.pop(0)
        except (OperationalError, InterfaceError):
            logger.exception("taskconsole: the database went away during a refused batch")
            self._keep_for_later(left)
        return written

    def _write_once_more(self, records: list[dict[str, Any]], audits: list[Audit]) -> None:
        try:
            _write_together(records, audits)
        except (IntegrityError, DataError):
            raise  # the rows themselves: a fresh connection would be refused them too
        except Exception:
            # A broken connection (database restarted): one retry on a fresh one. Not when
            # the flush runs in a caller's transaction: closing would lose the caller's writes.
            connection = connections[router.db_for_write(TaskRecord)]
            if connection.in_atomic_block:
                raise
            connection.close()
            _write_together(records, audits)

    def _keep_for_later(self, audits: list[Audit]) -> None:
        if not audits:
            return
        with self._lock:
            room = max(0, AUDIT_BACKLOG - len(self._kept))
            self._kept[:0] = audits[:room]
        for audit in audits[room:]:
            # Past the bound, the log is the last place the entry goes to.
            logger.error("taskconsole: audit entry lost: %s", audit)
        if threading.current_thread() is not self._thread and not self._exiting:
            # The thread may be waiting with no time limit: it now has a batch to try again.
            self._pending.set()

    def _flush_at_exit(self) -> None:
        self._exiting = True
        self.flush()
        for audit in self._kept:
            logger.error("taskconsole: audit entry not written before exit: %s", audit)


@dataclass(frozen=True, slots=True)
class Audit:
    """An audit entry waiting in the buffer (the model instance is built by the flush)."""

    user_id: int | None
    action: str
    target: str
    details: dict[str, Any]
    at: datetime
    key: uuid.UUID = dataclasses.field(default_factory=uuid.uuid4)

    def entry(self, *, with_user: bool = True) -> AuditEntry:
        return AuditEntry(
            user_id=self.user_id if with_user else None,
            action=self.action,
            target=self.target,
            details=self.details,
            at=self.at,
            key=self.key,
        )

    def __str__(self) -> str:
        # For the log: the details (arguments) stay in the database, which controls who reads.
        task = self.details.get("task", "")
        return f"{self.action} {self.target} {task} by user {self.user_id} at {self.at.isoformat()}"


def _write_together(records: list[dict[str, Any]], audits: list[Audit]) -> None:
    if not audits:
        write(records)
        return
    with transaction.atomic(using=router.db_for_write(AuditEntry)):
        if records:
            write(records)
        _insert_audits([audit.entry() for audit in audits])


def _insert_audits(entries: list[AuditEntry]) -> None:
    # An entry whose key is already stored was written by an earlier try of the same batch.
    AuditEntry.objects.bulk_create(entries, ignore_conflicts=True)


def _first_that_writes(tries: list[Any], save: Callable[[Any], Any]) -> bool:
    """Whether one of the tries was saved; a database that is away is not a refusal."""
    for attempt in tries:
        try:
            with transaction.atomic(using=router.db_for_write(TaskRecord)):
                save(attempt)
        except (OperationalError, InterfaceError):
            raise
        except Exception:
            continue
        return True
    return False


def build_record(fields: dict[str, Any]) -> TaskRecord:
    """The publish record from the fields on_before_publish collected (arguments unclipped)."""
    limit = int(setting("TASKCONSOLE_MAX_STORED_ARGS", 10_000))
    return TaskRecord(
        **{
            **fields,
            "args": clip_json(fields["args"], limit),
            "kwargs": clip_json(fields["kwargs"], limit),
        }
    )


def write(entries: list[dict[str, Any]], *, new: bool = False) -> None:
    """Insert the records, keeping any row the worker already created (and maybe finished).

    `new`: none of these tasks has been sent yet, so no row can exist (taskconsole.bulk
    records a round before it pushes it), and PostgreSQL copies a large batch straight in.
    """
    alias = router.db_for_write(TaskRecord)
    connection = connections[alias]
    if connection.vendor not in ("sqlite", "postgresql"):
        records = [build_record(fields) for fields in entries]
        TaskRecord.objects.bulk_create(records, batch_size=500, ignore_conflicts=True)
        return
    # INSERTs of many rows each, written directly: building model instances and compiling a
    # bulk_create costs more than the database's own work for these narrow rows, and one
    # statement per row costs the database more than one per batch of rows.
    fields = _fields()
    limit = int(setting("TASKCONSOLE_MAX_STORED_ARGS", 10_000))
    columns = _columns(entries, fields, connection, limit)
    if connection.vendor == "postgresql" and len(entries) >= COPY_FROM:
        _copy(connection, fields, columns, new)
        return
    rows = list(zip(*columns, strict=True))
    size = ROWS_PER_INSERT
    if connection.features.max_query_params:
        size = max(1, min(size, connection.features.max_query_params // len(fields)))
    whole = len(rows) - len(rows) % size
    batches = [
        [value for row in rows[start : start + size] for value in row]
        for start in range(0, whole, size)
    ]
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        if batches:
            # One statement, prepared once, run for every batch of `size` rows.
            cursor.executemany(_statement(connection, size), batches)
        if whole < len(rows):
            rest = rows[whole:]
            cursor.execute(
                _statement(connection, len(rest)), [value for row in rest for value in row]
            )


def _copy(connection: Any, fields: list, columns: list[list[Any]], new: bool) -> None:
    """Many records on PostgreSQL: COPY, into the table itself when the rows are `new`.

    Django's cursors bind parameters on the client, so an INSERT of many rows is a long text
    of quoted values for the server to parse: most of the cost of a burst of records
    (taskconsole.bulk). COPY sends the values as data. COPY cannot skip a row that exists, so
    otherwise the rows go to a table of this transaction first, and an INSERT ... SELECT keeps
    a row the worker already created, as the plain INSERT does. That table is dropped once
    used (a caller's transaction may write twice) and in any case at commit: nothing outlives
    the transaction (safe behind a transaction-pooling proxy).
    """
    quote = connection.ops.quote_name
    table = quote(TaskRecord._meta.db_table)
    names = ", ".join(quote(field.column) for field in fields)
    unique = quote(TaskRecord._meta.get_field("task_id").column)
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        if new:
            _copy_rows(cursor, table, names, columns)
            return
        cursor.execute(
            f"CREATE TEMPORARY TABLE taskconsole_copy ON COMMIT DROP AS "
            f"SELECT {names} FROM {table} WITH NO DATA"
        )
        _copy_rows(cursor, "taskconsole_copy", names, columns)
        cursor.execute(
            f"INSERT INTO {table} ({names}) SELECT {names} FROM taskconsole_copy "
            f"ON CONFLICT ({unique}) DO NOTHING"
        )
        cursor.execute("DROP TABLE taskconsole_copy")


def _copy_rows(cursor: Any, target: str, names: str, columns: list[list[Any]]) -> None:
    with cursor.cursor.copy(f"COPY {target} ({names}) FROM STDIN") as copy:
        # Written a part at a time, so that the server reads one while the next is made.
        for part in _copy_parts(columns, cursor.cursor):
            copy.write(part)


#: Rows per part of a COPY.
COPY_PART = 1000
# COPY's text format: a backslash starts an escape; tab and newline separate values and rows.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_parts(columns: list[list[Any]], context: Any) -> Iterator[str]:
    """The rows in COPY's text format, COPY_PART rows at a time.

    psycopg's write_row renders every value of every row, the JSON of the arguments
    included, though the rows of a burst share most of their values (the same object from
    one row to the next, see _columns). Here each is rendered once, by psycopg's own text
    dumper for its type (text and NULL directly), and escaped as COPY's text format needs
    (write_row also escapes backspace, form feed and vertical tab, which COPY reads as
    themselves either way).
    """
    from psycopg.adapt import PyFormat, Transformer

    transformer = Transformer.from_context(context)

    def render(value: Any) -> str:
        if value is None:
            return "\\N"
        if not isinstance(value, str):
            dumped = transformer.get_dumper(value, PyFormat.TEXT).dump(value)
            if dumped is None:
                return "\\N"
            value = bytes(dumped).decode()
        # A str-based choice (TaskStatus) is its value, as psycopg writes it.
        return str.translate(value, _COPY_ESCAPES)

    count = len(columns[0]) if columns else 0
    last: list[Any] = [columns] * len(columns)  # no value is the list of columns
    text = [""] * len(columns)
    for start in range(0, count, COPY_PART):
        part = []
        for i, column in enumerate(columns):
            rendered: list[str] = []
            previous, current = last[i], text[i]
            for value in column[start : start + COPY_PART]:
                if value is not previous:
                    previous, current = value, render(value)
                rendered.append(current)
            last[i], text[i] = previous, current
            part.append(rendered)
        yield "".join(f"{line}\n" for line in map("\t".join, zip(*part, strict=True)))


def _columns(
    entries: list[dict[str, Any]], fields: list, connection: Any, limit: int
) -> list[list[Any]]:
    """The INSERT's parameters, a column at a time: each record's fields prepared for the
    database.

    Preparing a value (the JSON of the arguments, clipped, above all) is most of the cost of a
    row, and the records of a burst share most of theirs (the task's name, its queue, its
    origin...). So the rows are prepared a column at a time, and a value that is the very
    object of the previous row's (the same object in every row, often) is prepared once. A
    default is one object for all rows unless it is made per row (a callable).
    """
    columns = []
    for field in fields:
        attname = field.attname
        if field.has_default() and callable(field.default):
            values = [
                entry[attname] if attname in entry else field.get_default() for entry in entries
            ]
        else:
            fixed = field.get_default()
            values = [entry.get(attname, fixed) for entry in entries]
        clip = attname in ("args", "kwargs")
        prepare = field.get_db_prep_save
        distinct = len(set(map(id, values)))
        if distinct == 1:
            # One object in every row (the task's name, its origin, a default...).
            value = values[0]
            prepared = prepare(clip_json(value, limit) if clip else value, connection)
            columns.append([prepared] * len(values))
            continue
        if distinct == len(values):
            # A new object in every row (the task's id...): nothing to reuse.
            if clip:
                values = [clip_json(value, limit) for value in values]
            if _keeps_text(field) and all(type(value) is str for value in values):
                # The field would hand each string back as it is: 1 µs a row for nothing.
                columns.append(values)
            else:
                columns.append([prepare(value, connection) for value in values])
            continue
        column = []
        last: Any = column  # no value is this list
        for value in values:
            if value is not last:
                last = value
                prepared = prepare(clip_json(value, limit) if clip else value, connection)
            column.append(prepared)
        columns.append(column)
    return columns


@functools.cache
def _keeps_text(field: Any) -> bool:
    """Whether the field prepares a str for the database as that very str (CharField and
    TextField do, unless a subclass changes how)."""
    kind = type(field)
    return (
        isinstance(field, models.CharField | models.TextField)
        and kind.get_db_prep_save is models.Field.get_db_prep_save
        and kind.get_db_prep_value is models.Field.get_db_prep_value
        and kind.get_prep_value
        in (models.CharField.get_prep_value, models.TextField.get_prep_value)
        and kind.to_python in (models.CharField.to_python, models.TextField.to_python)
    )


def _fields() -> list:
    return [field for field in TaskRecord._meta.concrete_fields if not field.primary_key]


_statements: dict[tuple[str, int], str] = {}


def _statement(connection: Any, rows: int) -> str:
    """The INSERT of ``rows`` rows (made once per database vendor and size)."""
    key = (connection.vendor, rows)
    if key not in _statements:
        quote = connection.ops.quote_name
        fields = _fields()
        columns = ", ".join(quote(field.column) for field in fields)
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        unique = quote(TaskRecord._meta.get_field("task_id").column)
        _statements[key] = (
            f"INSERT INTO {quote(TaskRecord._meta.db_table)} ({columns}) "
            f"VALUES {', '.join([row] * rows)} ON CONFLICT ({unique}) DO NOTHING"
        )
    return _statements[key]


_buffer = PublishBuffer()


def add(fields: dict[str, Any]) -> None:
    _buffer.add(fields)


def add_many(entries: list[dict[str, Any]]) -> None:
    """Buffer several records at once (taskconsole.bulk): one lock, one size check."""
    _buffer.add_many(entries)


def add_audit(audit: Audit) -> None:
    """Buffer a launch's audit entry, added just after its task's record: the same batch
    writes both as a rule (a batch taken in between writes the entry with the next one)."""
    _buffer.add_many([audit])


def settle(task_id: str) -> None:
    """Write this process's buffer if it holds the task's record, after any batch being
    written (which may be the one that holds it) is in the database."""
    _buffer.flush_if(lambda: _buffer.holds(task_id))


def settle_all(task_ids: Iterable[str]) -> None:
    """settle() for many tasks at once: one look through the buffer, one write at most."""
    wanted = set(task_ids)
    _buffer.flush_if(lambda: _buffer.holds_any(wanted))


def holds(task_id: str) -> bool:
    """Whether this process's buffer has the task's record, not written yet."""
    return _buffer.holds(task_id)


def kept() -> int:
    """Audit entries waiting for a database that refused to write them."""
    return _buffer.kept()


def flush() -> int:
    """Write this process's buffered publish records now (tests, shutdown hooks, scripts)."""
    return _buffer.flush()


def pending() -> int:
    return len(_buffer)


__all__ = [
    "Audit",
    "add",
    "add_audit",
    "add_many",
    "enabled",
    "flush",
    "holds",
    "kept",
    "pending",
    "settle",
]
