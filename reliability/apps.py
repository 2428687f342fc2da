import threading
import time

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ReliabilityConfig(AppConfig):
    name = "reliability"
    verbose_name = _("Reliability")

    def ready(self) -> None:
        from celery import current_app

        from . import checks  # noqa: F401  (registers the system checks)
        from .results import use_retrying_backend

        use_retrying_backend(current_app._get_current_object())
        from celery.signals import task_postrun, task_prerun

        task_prerun.connect(check_idle_connections, weak=False, dispatch_uid=__name__)
        task_postrun.connect(replace_broken_connections, weak=False, dispatch_uid=__name__)


#: A connection idle for longer than this is checked before a task uses it again; one that the
#: previous task used without an error a moment ago is not, when the task's claim comes first
#: (see replace_broken_connections).
IDLE_CHECK_SECONDS = 1.0
# Per thread, as Django's connections are (a threads pool runs a task in each).
_idle = threading.local()


def replace_broken_connections(task: object = None, **_: object) -> None:
    """After each task, drop a connection that failed during it (the database restarted).

    Workers keep their connections across tasks (CELERY_DB_REUSE_MAX), so one broken by a
    database restart would otherwise reach the next task's own queries. Django's own check,
    as at the end of a request, closes a connection that raised an error and is no longer
    usable, or that outlived CONN_MAX_AGE. Django would also run a liveness check (SELECT 1
    on PostgreSQL) before the next query of every connection: at hundreds of tiny tasks a
    second that was a round trip per task, 7% of a worker child's time. Before a task whose
    first query is its claim, which retries on a new connection (reliability.delivery), a
    connection that raised no error is checked only when it has been idle for
    IDLE_CHECK_SECONDS; before any other task it is checked as Django would
    (check_idle_connections).
    """
    from django.db import connections

    # An eager task (apply(), tests) runs inside its caller's request or transaction, whose
    # connection is not ours to close; Celery's own Django fixup leaves those alone too.
    if getattr(getattr(task, "request", None), "is_eager", False):
        return
    opened = list(connections.all(initialized_only=True))
    if any(conn.in_atomic_block for conn in opened):
        return
    for conn in opened:
        fine = not conn.errors_occurred
        conn.close_if_unusable_or_obsolete()
        if fine and conn.connection is not None:
            conn.health_check_done = True
    _idle.since = time.monotonic()


def check_idle_connections(task: object = None, **_: object) -> None:
    """Before a task, have Django check the connections, unless the task's claim will (and
    they were in use a moment ago)."""
    from django.db import connections

    from .delivery import starts_with_a_database_write

    if getattr(getattr(task, "request", None), "is_eager", False):
        return
    recent = time.monotonic() - getattr(_idle, "since", float("-inf")) < IDLE_CHECK_SECONDS
    if recent and starts_with_a_database_write(task):
        return
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.health_check_done = False
