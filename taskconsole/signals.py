"""The console's signal for apps (task_cancelled), and the audit of periodic tasks edited
outside the console (the admin, other views)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import Signal

from .conf import has_beat
from .context import current_request_user

logger = logging.getLogger(__name__)

#: A task was cancelled and will not run (or was stopped while it ran): the app that queued it
#: puts its own objects in a final state. Sent by the console's cancel of a waiting task, at
#: once (a worker discards its message whenever it comes), and by a worker that discards or
#: stops a revoked task: a cancel from the console, `celery control revoke`, an expired task.
#: Once per task, except one the console took for waiting that its worker then stopped while
#: it ran (told again, terminated). Without terminated, the task had not started as far as
#: anyone knew: a receiver acts only on what is still waiting (a worker may have started it a
#: moment before the console's word). Keyword arguments: task_id, name, args, kwargs (as the
#: console stored them: redacted where secret, empty where the task has no record),
#: terminated (stopped while running), expired.
task_cancelled = Signal()


def announce_cancelled(
    task_id: str,
    name: str,
    args: Any = None,
    kwargs: Any = None,
    *,
    terminated: bool = False,
    expired: bool = False,
) -> None:
    """Send task_cancelled; a receiver that fails is logged, never the canceller's error."""
    responses = task_cancelled.send_robust(
        sender=None,
        task_id=task_id,
        name=name,
        args=list(args or []),
        kwargs=dict(kwargs or {}),
        terminated=terminated,
        expired=expired,
    )
    for receiver, response in responses:
        if isinstance(response, Exception):
            logger.error(
                "%s, a receiver of task_cancelled, failed for %s[%s]: %r",
                getattr(receiver, "__qualname__", receiver),
                name,
                task_id,
                response,
                exc_info=(type(response), response, response.__traceback__),
            )


@dataclass(frozen=True)
class Cancellation:
    """One task_cancelled, as `when_cancelled` hands it to an app."""

    task_id: str
    name: str
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    terminated: bool = False
    expired: bool = False

    def reason(self, expired: str, stopped: str, cancelled: str) -> str:
        """The one of three texts that says what happened to it."""
        return expired if self.expired else stopped if self.terminated else cancelled


def when_cancelled(
    names: Iterable[str], handler: Callable[[Cancellation], Any], *, dispatch_uid: str
) -> None:
    """Call handler(Cancellation) for each task_cancelled of a task named in `names`."""
    wanted = frozenset(names)

    def receiver(sender: Any = None, **sent: Any) -> None:
        if sent.get("name") in wanted and sent.get("task_id"):
            handler(Cancellation(**{f.name: sent[f.name] for f in fields(Cancellation)}))

    receiver.__qualname__ = getattr(handler, "__qualname__", repr(handler))
    task_cancelled.connect(receiver, weak=False, dispatch_uid=dispatch_uid)


def _audit(action: str, instance: Any) -> None:
    user = current_request_user()
    if user is None:
        # Beat saves its bookkeeping (last_run_at, counts) all the time: not a person's change.
        return
    try:
        from .actions import audit

        audit(user, action, instance.name, task=instance.task)
    except Exception:
        logger.exception("Could not audit the change of periodic task %s", instance.pk)


def on_periodic_saved(sender: Any, instance: Any, created: bool = False, **_: Any) -> None:
    from .models import AuditAction

    _audit(AuditAction.SCHEDULE_CHANGE, instance)


def on_periodic_deleted(sender: Any, instance: Any, **_: Any) -> None:
    from .models import AuditAction

    _audit(AuditAction.SCHEDULE_DELETE, instance)


def connect() -> None:
    if not has_beat():
        return
    from django_celery_beat.models import PeriodicTask

    post_save.connect(on_periodic_saved, sender=PeriodicTask, dispatch_uid="tc_periodic_saved")
    post_delete.connect(on_periodic_deleted, sender=PeriodicTask, dispatch_uid="tc_periodic_del")
