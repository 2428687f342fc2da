"""django-celery-results, made to wait for the database instead of losing the task.

A worker writes the task's STARTED state before it runs it and the outcome after; with the
database unreachable, django-celery-results raises, Celery reports an internal error and the
task (already acknowledged) is gone without having run. With CELERY_RESULT_BACKEND_ALWAYS_RETRY
Celery retries a write the backend calls safe to retry; django-celery-results only says so for
psycopg2's InterfaceError, never for the OperationalError of a dropped or refused connection.
This backend does, after closing the broken connection so the retry opens a new one: the worker
waits (with backoff, CELERY_RESULT_BACKEND_MAX_RETRIES times) and goes on once it is back.

Only while a task runs (in the worker): a web page reading a result must fail fast, not wait
minutes for the database.

Secrets are never stored: a task's result, an exception's message and its traceback have their
secret-looking values hidden before they are written (`redact_outcome`, with the rules of
taskconsole.redaction), so what AsyncResult returns is the redacted value.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from celery import Celery, states
from celery._state import get_current_task
from django.db import DatabaseError, InterfaceError, OperationalError, connections, router
from django.utils import timezone
from django_celery_results.backends.database import DatabaseBackend
from django_celery_results.models import TaskResult

from taskconsole import writeback
from taskconsole.redaction import redact_result, redact_text

BACKEND = "reliability.results:RetryingDatabaseBackend"
#: Databases with INSERT ... ON CONFLICT DO UPDATE ... WHERE (others take the library's path).
UPSERT_VENDORS = ("sqlite", "postgresql")
#: Written on every store; date_created only when the row is new, date_started on STARTED.
STORED = (
    "status",
    "result",
    "traceback",
    "meta",
    "content_encoding",
    "content_type",
    "periodic_task_name",
    "task_name",
    "task_args",
    "task_kwargs",
    "worker",
)


def upsert_task_result(connection: Any, model: Any, task_id: str, fields: dict[str, Any]) -> None:
    """Store one task's state and result as django-celery-results does, in one statement.

    The library reads the row (get_or_create) and saves it: two or three statements and a
    savepoint per store, two stores per task. This writes the same columns with one upsert,
    and never lets STARTED replace a finished state: Celery writes STARTED before the task's
    own code can tell a second delivery of a finished run (which AtMostOnceTask then drops).
    """
    with connection.cursor() as cursor:
        cursor.execute(
            _upsert_sql(connection.ops.quote_name, model._meta.db_table),
            _row(connection, task_id, Store(fields["status"], fields)),
        )


@dataclass(frozen=True)
class Store:
    """One store of a task's state: its columns, when it was made, when the task started.

    `fields` may be a function that makes them: a deferred STARTED is usually merged into the
    task's outcome before it is written, and then its columns are never needed.
    """

    status: str
    fields: dict[str, Any] | Callable[[], dict[str, Any]]
    at: datetime = field(default_factory=timezone.now)
    started: datetime | None = None

    def __post_init__(self) -> None:
        if self.started is None and self.status == states.STARTED:
            object.__setattr__(self, "started", self.at)

    def columns(self) -> dict[str, Any]:
        return self.fields() if callable(self.fields) else self.fields


def _row(connection: Any, task_id: str, store: Store) -> list[Any]:
    adapt = connection.ops.adapt_datetimefield_value
    now = adapt(store.at)
    started = adapt(store.started) if store.started else None
    columns = store.columns()
    return [task_id, *(columns.get(name) for name in STORED), now, now, started]


#: The kind of the worker's deferred result stores (taskconsole.writeback).
RESULT_WRITES = "reliability.results"


def _merge(earlier: Store, later: Store) -> Store:
    """Two stores of one task waiting together: the later wins, STARTED never over an outcome."""
    if later.status == states.STARTED and earlier.status in states.READY_STATES:
        return earlier
    return Store(later.status, later.fields, later.at, later.started or earlier.started)


def _prepare_rows(entries: list[tuple[str, Store]]) -> list[list[Any]]:
    """The upsert's parameters (the results encoded), made before the batch's transaction."""
    connection = connections[router.db_for_write(TaskResult)]
    return [_row(connection, task_id, store) for task_id, store in entries]


def _write_rows(rows: list[list[Any]]) -> None:
    connection = connections[router.db_for_write(TaskResult)]
    sql = _upsert_sql(connection.ops.quote_name, TaskResult._meta.db_table)
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


writeback.register(RESULT_WRITES, _merge, _write_rows, _prepare_rows)


@functools.lru_cache(maxsize=8)
def _upsert_sql(q: Callable[[str], str], table: str) -> str:
    columns = ["task_id", *STORED, "date_created", "date_done", "date_started"]
    table = q(table)
    finished = ", ".join(f"'{state}'" for state in sorted(states.READY_STATES))
    updates = ", ".join(f"{q(name)} = excluded.{q(name)}" for name in (*STORED, "date_done"))
    return (
        f"INSERT INTO {table} ({', '.join(q(c) for c in columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({q('task_id')}) DO UPDATE SET {updates}, "
        f"{q('date_started')} = COALESCE(excluded.{q('date_started')}, "
        f"{table}.{q('date_started')}) "
        f"WHERE excluded.{q('status')} <> '{states.STARTED}' "
        f"OR {table}.{q('status')} NOT IN ({finished})"
    )


def redact_outcome(result: Any, status: str, traceback: Any) -> tuple[Any, Any]:
    """(result, traceback) as stored: their secret-looking values hidden.

    A failure's result is Celery's encoded exception: with JSON, a dict whose exc_message holds
    the exception's arguments; with pickle, the exception, stored as a copy with its arguments
    redacted. Any other state's result is the task's value (None and numbers cost nothing).
    """
    if status == states.STARTED:
        return result, traceback  # Celery's own: the worker's pid and name
    if isinstance(traceback, str):
        traceback = redact_text(traceback)
    if status not in states.EXCEPTION_STATES:
        return redact_result(result), traceback
    if isinstance(result, dict) and "exc_message" in result:
        message = redact_result(result["exc_message"])
        if message is not result["exc_message"]:
            result = {**result, "exc_message": message}
    elif isinstance(result, BaseException) and result.args:
        hidden = redact_result(result.args)
        if hidden is not result.args:
            result = copy.copy(result)
            result.args = tuple(hidden)
    return result, traceback


class RetryingDatabaseBackend(DatabaseBackend):
    def as_uri(self, include_password: bool = False) -> str:
        # The worker's banner shows this as `results:`; django-celery-results has no URL, and a
        # blank line there read as results being off.
        return "django-db"

    def _store_result(
        self,
        task_id: str,
        result: Any,
        status: str,
        traceback: Any = None,
        request: Any = None,
        using: str | None = None,
    ) -> Any:
        stored = result
        result, traceback = redact_outcome(result, status, traceback)
        connection = connections[using or router.db_for_write(self.TaskModel)]
        if connection.vendor not in UPSERT_VENDORS:
            if status == states.STARTED and (
                self.TaskModel._default_manager.using(using)
                .filter(task_id=task_id, status__in=states.READY_STATES)
                .exists()
            ):
                return stored
            super()._store_result(task_id, result, status, traceback, request, using)
            return stored

        def columns() -> dict[str, Any]:
            content_type, content_encoding, encoded = self.encode_content(result)
            meta = {
                **self._get_meta_from_request(request),
                "children": self.current_task_children(request),
            }
            return {
                "content_encoding": content_encoding,
                "content_type": content_type,
                "meta": self.encode_content(meta)[2],
                "result": encoded,
                "status": status,
                "traceback": traceback,
                **self._get_extended_properties(request, traceback),
            }

        if (
            self.TaskModel is TaskResult
            and connection.alias == router.db_for_write(TaskResult)
            and writeback.deferring(request)
            # A chord's parts are counted, then their results read, by whichever part ends
            # last, maybe in another process: theirs are written at once.
            and not getattr(request, "chord", None)
            # RETRY (and a task's own states) at once: the retry may already be running in
            # another worker, and its outcome must not be overwritten by a late RETRY.
            and (status == states.STARTED or status in states.READY_STATES)
        ):
            # Written with the worker's other writes about its tasks (taskconsole.writeback).
            # STARTED's columns are made only if it is written before the outcome replaces it.
            lazy = status == states.STARTED
            writeback.defer(RESULT_WRITES, task_id, Store(status, columns if lazy else columns()))
        else:
            writeback.settle(task_id)
            upsert_task_result(connection, self.TaskModel, task_id, columns())
        return stored

    def _get_task_meta_for(self, task_id: str) -> Any:
        # A task reading a result this process has not written yet.
        writeback.settle(task_id)
        return super()._get_task_meta_for(task_id)

    def exception_safe_to_retry(self, exc: BaseException) -> bool:
        if isinstance(exc, InterfaceError | OperationalError) and get_current_task() is not None:
            with contextlib.suppress(DatabaseError):
                connections[router.db_for_write(TaskResult)].close()
            return True
        return super().exception_safe_to_retry(exc)


def use_retrying_backend(app: Celery) -> None:
    """Use RetryingDatabaseBackend where the configured backend is django-db.

    The setting keeps its tutorial value ("django-db"); only the class behind it changes.
    """
    if app.conf.result_backend == "django-db":
        app.backend_cls = BACKEND
        # A backend made before Django was ready would be the plain one.
        with contextlib.suppress(AttributeError):
            del app._local.backend
