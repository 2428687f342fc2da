"""Dispatch on commit through an outbox: nothing committed is lost when the broker is down.

``dispatch_on_commit(task, *args, **kwargs)`` writes an OutboxMessage in the caller's
transaction and returns the task id at once (Celery's delay_on_commit returns None,
celery#8976). After the commit the message is published without retries, so a request never
waits on a broker that is down; ``sweep()`` (the periodic task reliability.tasks.sweep_outbox)
re-sends what the broker did not take. A message can reach the broker twice (published, then
the database went away before it was marked sent): tasks dispatched this way should use
IdempotentTask or AtMostOnceTask, which skip a second delivery of the same task id.

The broker can also lose a message it took: a Redis without persistence that restarts drops
its queues. For tasks built on IdempotentTask or AtMostOnceTask, which record when they start,
the sweeper re-sends a message that was sent RELIABILITY_OUTBOX_CONFIRM_SECONDS ago, never
started, whose queue is empty and which no worker holds (so it is not merely waiting its turn,
in the queue or in a worker that took it ahead: `taskconsole.vanished.not_held`). Its arguments
are kept until the task starts, for that re-send.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Exists, F, OuterRef, Q, Value
from django.db.models.functions import Coalesce
from django.dispatch import Signal
from django.utils import timezone
from django.utils.module_loading import autodiscover_modules

from taskconsole.unsent import SENT_AGAIN_HEADER
from taskconsole.vanished import not_held

from .models import OutboxMessage, OutboxStatus

logger = logging.getLogger(__name__)

#: Stamped on every message the outbox publishes, so that a task that did not come through the
#: outbox (most of them) skips forget_args: no query on the path of every task.
HEADER = "reliability_outbox"
#: The console keeps a task the outbox failed to send waiting, not failed: the sweeper sends it.
HEADERS = {HEADER: 1, SENT_AGAIN_HEADER: 1}


#: Sent once the broker took a message (task_name=, task_id=): an app that showed its work as
#: waiting for the queue moves it on (imports).
published = Signal()


def came_through_outbox(request: Any) -> bool:
    """Whether the task being run was published from an outbox row (see HEADER)."""
    # A task's Context carries message headers as attributes; a worker Request keeps them in
    # its request_dict.
    value = getattr(request, HEADER, None)
    if value is None:
        value = (getattr(request, "request_dict", None) or {}).get(HEADER)
    return bool(value)


def dispatch_on_commit(task: Any, *args: Any, **kwargs: Any) -> str:
    """Queue `task(*args, **kwargs)` to be published once the current transaction commits."""
    return dispatch_with_options(task, args, kwargs)


def dispatch_with_options(
    task: Any, args: tuple | list = (), kwargs: dict | None = None, **options: Any
) -> str:
    """Like dispatch_on_commit, with apply_async options (queue, countdown...)."""
    message = enqueue(task, args, kwargs, **options)
    transaction.on_commit(lambda: publish(message.pk))
    return message.task_id


def enqueue(
    task: Any,
    args: tuple | list = (),
    kwargs: dict | None = None,
    task_id: str | None = None,
    **options: Any,
) -> OutboxMessage:
    """Only write the outbox row: for callers that publish it after commit themselves
    (``publish(message.pk)``), to say something when the broker did not take it at once."""
    return OutboxMessage.objects.create(
        task_id=task_id or str(uuid.uuid4()),
        task_name=task if isinstance(task, str) else task.name,
        args=list(args),
        kwargs=dict(kwargs or {}),
        options=options,
    )


def is_sent(pk: int) -> bool:
    return OutboxMessage.objects.filter(pk=pk, status=OutboxStatus.SENT).exists()


def last_error(pk: int) -> str:
    """Why the broker did not take the message the last time it was tried ("" if it did)."""
    return OutboxMessage.objects.filter(pk=pk).values_list("last_error", flat=True).first() or ""


def _claim(pk: int, now: Any) -> bool:
    stale = now - timedelta(seconds=settings.RELIABILITY_OUTBOX_CLAIM_SECONDS)
    return bool(
        OutboxMessage.objects.filter(pk=pk, status=OutboxStatus.PENDING)
        .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=stale))
        .update(claimed_at=now)
    )


def publish(pk: int) -> bool:
    """Publish one outbox message unless someone else is; True when the broker took it."""
    from myproject.celery import app

    now = timezone.now()
    try:
        if not _claim(pk, now):
            return False
        message = OutboxMessage.objects.get(pk=pk)
    except DatabaseError as exc:
        logger.warning("Outbox message %s not published now (database): %s", pk, exc)
        return False
    if message.status != OutboxStatus.PENDING:
        # A copy of the task started between the claim and the read (forget_args): it was
        # published already, and its arguments are gone.
        return False
    options = dict(message.options or {})
    options["headers"] = {**(options.get("headers") or {}), **HEADERS}
    # A tuple, as delay() sends: the stored result shows the same arguments either way.
    args = tuple(message.args or ())
    try:
        task = _task(app, message.task_name)
        # No publish retries: the request must not wait; the sweeper tries again later.
        if task is not None:
            task.apply_async(args, message.kwargs, task_id=message.task_id, retry=False, **options)
        else:
            app.send_task(
                message.task_name,
                args,
                message.kwargs,
                task_id=message.task_id,
                retry=False,
                **options,
            )
    except Exception as exc:
        logger.warning(
            "Outbox: %s[%s] not published yet (%s); the sweeper will re-send it.",
            message.task_name,
            message.task_id,
            exc,
        )
        OutboxMessage.objects.filter(pk=pk).update(
            claimed_at=None, attempts=message.attempts + 1, last_error=str(exc)[:2000]
        )
        return False
    sent: dict[str, Any] = {}
    if not records_start(task):
        # The broker has them now: arguments (perhaps secrets) are not kept a second time.
        # (A task that records its start drops them itself when it starts: see forget_args.)
        sent = {"args": [], "kwargs": {}}
    try:
        OutboxMessage.objects.filter(pk=pk).update(
            status=OutboxStatus.SENT, sent_at=timezone.now(), attempts=message.attempts + 1, **sent
        )
    except DatabaseError as exc:
        # Published but not marked: the sweeper will send it again, the worker skips the copy.
        logger.warning("Outbox: %s published but not marked sent: %s", message.task_id, exc)
    for receiver, error in published.send_robust(
        OutboxMessage, task_name=message.task_name, task_id=message.task_id
    ):
        if isinstance(error, Exception):
            logger.warning("Outbox: %r failed after %s was published: %s", receiver, pk, error)
    return True


def sweep(older_than: float | None = None, limit: int = 500) -> int:
    """Re-send pending messages older than `older_than` seconds; returns how many were sent."""
    grace = settings.RELIABILITY_OUTBOX_GRACE_SECONDS if older_than is None else older_than
    cutoff = timezone.now() - timedelta(seconds=grace)
    pending = list(
        OutboxMessage.objects.filter(status=OutboxStatus.PENDING, created_at__lte=cutoff)
        .order_by("id")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(1 for pk in pending if publish(pk)) + resend_lost(limit=limit)


def _task(app: Any, name: str) -> Any:
    """The registered task, importing every app's tasks.py first if need be: a web process
    has not imported them, and the task's class decides what the outbox keeps."""
    task = app.tasks.get(name)
    if task is None:
        autodiscover_modules("tasks")
        task = app.tasks.get(name)
    return task


def records_start(task: Any) -> bool:
    """IdempotentTask and AtMostOnceTask write a Delivery row when they start."""
    from .delivery import AtMostOnceTask, IdempotentTask

    return isinstance(task, IdempotentTask | AtMostOnceTask)


def forget_args(task_id: str) -> None:
    """Called by a task from the outbox that started (came_through_outbox): the broker
    delivered it, the re-send copy can go.

    The worker can start the task before publish() has marked the row sent: the row is
    marked sent here too, or publish() would find it pending and keep the arguments, and a
    publish() whose own mark failed would leave it for the sweeper to send again.
    """
    OutboxMessage.objects.filter(task_id=task_id).filter(
        Q(status=OutboxStatus.PENDING) | ~Q(args=[], kwargs={})
    ).update(
        args=[],
        kwargs={},
        status=OutboxStatus.SENT,
        sent_at=Coalesce(F("sent_at"), Value(timezone.now())),
    )


def _queue_name(app: Any, message: OutboxMessage) -> str:
    return app.amqp.router.route(dict(message.options or {}), message.task_name)["queue"].name


def resend_lost(limit: int = 500) -> int:
    """Send again what the broker took but lost: sent long enough ago, never started, its
    queue empty and no worker holding it (a worker busy with long tasks holds the messages it
    took ahead: those wait their turn). The task's own start record makes a late duplicate
    harmless."""
    from myproject.celery import app

    from .models import Delivery

    now = timezone.now()
    wait = timedelta(seconds=settings.RELIABILITY_OUTBOX_CONFIRM_SECONDS)
    names = [name for name, task in app.tasks.items() if records_start(task)]
    # Never started: no Delivery row (an anti-join on its task_id index).
    sent = (
        OutboxMessage.objects.filter(
            status=OutboxStatus.SENT,
            task_name__in=names,
            sent_at__lte=now - wait,
            sent_at__gte=now - timedelta(days=1),
        )
        .filter(~Exists(Delivery.objects.filter(task_id=OuterRef("task_id"))))
        .order_by("id")[:limit]
    )
    due: dict[str, OutboxMessage] = {}
    by_queue: dict[str, list[str]] = defaultdict(list)
    for message in sent:
        options = message.options or {}
        at = message.sent_at + timedelta(seconds=float(options.get("countdown") or 0))
        if options.get("eta") or at > now - wait:
            continue  # a countdown/ETA not reached yet: not started is expected
        due[message.task_id] = message
        by_queue[_queue_name(app, message)].append(message.task_id)
    if not by_queue:
        return 0
    resent = 0
    for task_id in not_held(by_queue):
        message = due[task_id]
        logger.warning(
            "Outbox: %s[%s] was sent %s but never started, its queue is empty and no worker "
            "holds it; sending it again.",
            message.task_name,
            message.task_id,
            message.sent_at.isoformat(timespec="seconds"),
        )
        OutboxMessage.objects.filter(pk=message.pk, status=OutboxStatus.SENT).update(
            status=OutboxStatus.PENDING, claimed_at=None
        )
        resent += publish(message.pk)
    return resent


def prune(max_age_days: int) -> int:
    """Delete sent messages older than max_age_days, and claims and delivery counts older
    than RELIABILITY_DELIVERY_KEEP_HOURS (every task writes one: they must not pile up)."""
    from .models import Delivery

    now = timezone.now()
    cutoff = now - timedelta(days=max_age_days)
    deleted, _ = OutboxMessage.objects.filter(status=OutboxStatus.SENT, sent_at__lt=cutoff).delete()
    kept = timedelta(hours=settings.RELIABILITY_DELIVERY_KEEP_HOURS)
    Delivery.objects.filter(first_at__lt=now - kept).delete()
    return deleted
