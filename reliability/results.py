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
"""

from __future__ import annotations

import contextlib
from typing import Any

from celery import Celery, states
from celery._state import get_current_task
from django.db import DatabaseError, InterfaceError, OperationalError, connections, router
from django_celery_results.backends.database import DatabaseBackend
from django_celery_results.models import TaskResult

BACKEND = "reliability.results:RetryingDatabaseBackend"


class RetryingDatabaseBackend(DatabaseBackend):
    def _store_result(
        self,
        task_id: str,
        result: Any,
        status: str,
        traceback: Any = None,
        request: Any = None,
        using: str | None = None,
    ) -> Any:
        # Celery writes STARTED before the task's own code can tell a second delivery of a
        # finished run (which AtMostOnceTask then drops): it must not replace the outcome.
        if status == states.STARTED and (
            self.TaskModel._default_manager.using(using)
            .filter(task_id=task_id, status__in=states.READY_STATES)
            .exists()
        ):
            return result
        return super()._store_result(task_id, result, status, traceback, request, using)

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
