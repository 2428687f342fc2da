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
        from celery.signals import task_postrun

        task_postrun.connect(replace_broken_connections, weak=False, dispatch_uid=__name__)


def replace_broken_connections(task: object = None, **_: object) -> None:
    """After each task, drop a connection that failed during it (the database restarted).

    Workers keep their connections across tasks (CELERY_DB_REUSE_MAX), so one broken by a
    database restart would otherwise reach the next task's own queries. Django's own check,
    as at the end of a request: with CONN_HEALTH_CHECKS the next query is preceded by a cheap
    liveness check (SELECT 1 on PostgreSQL, nothing on SQLite).
    """
    from django.db import close_old_connections, connections

    # An eager task (apply(), tests) runs inside its caller's request or transaction, whose
    # connection is not ours to close; Celery's own Django fixup leaves those alone too.
    if getattr(getattr(task, "request", None), "is_eager", False):
        return
    if any(conn.in_atomic_block for conn in connections.all(initialized_only=True)):
        return
    close_old_connections()
