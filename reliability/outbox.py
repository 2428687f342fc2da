"""Dispatch on commit through an outbox: nothing committed is lost when the broker is down.

``dispatch_on_commit(task, *args, **kwargs)`` writes an OutboxMessage in the caller's
transaction and returns the task id at once (Celery's delay_on_commit returns None,
celery#8976). After the commit the message is published without retries, so a request never
waits on a broker that is down; ``sweep()`` (the periodic task reliability.tasks.sweep_outbox)
re-sends what the broker did not take. A message can reach the broker twice (published, then
the database went away before it was marked sent): tasks dispatched this way should use
IdempotentTask or AtMostOnceTask, which skip a second delivery of the same task id.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

from .models import OutboxMessage, OutboxStatus

logger = logging.getLogger(__name__)


def dispatch_on_commit(task: Any, *args: Any, **kwargs: Any) -> str:
    """Queue `task(*args, **kwargs)` to be published once the current transaction commits."""
    return dispatch_with_options(task, args, kwargs)


def dispatch_with_options(
    task: Any, args: tuple | list = (), kwargs: dict | None = None, **options: Any
) -> str:
    """Like dispatch_on_commit, with apply_async options (queue, countdown...)."""
    name = task if isinstance(task, str) else task.name
    task_id = str(uuid.uuid4())
    message = OutboxMessage.objects.create(
        task_id=task_id,
        task_name=name,
        args=list(args),
        kwargs=dict(kwargs or {}),
        options=options,
    )
    transaction.on_commit(lambda: publish(message.pk))
    return task_id


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
    options = dict(message.options or {})
    try:
        task = app.tasks.get(message.task_name)
        # No publish retries: the request must not wait; the sweeper tries again later.
        if task is not None:
            task.apply_async(
                message.args, message.kwargs, task_id=message.task_id, retry=False, **options
            )
        else:
            app.send_task(
                message.task_name,
                message.args,
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
    try:
        OutboxMessage.objects.filter(pk=pk).update(
            status=OutboxStatus.SENT,
            sent_at=timezone.now(),
            attempts=message.attempts + 1,
            # The broker has them now: arguments (perhaps secrets) are not kept a second time.
            args=[],
            kwargs={},
        )
    except DatabaseError as exc:
        # Published but not marked: the sweeper will send it again, the worker skips the copy.
        logger.warning("Outbox: %s published but not marked sent: %s", message.task_id, exc)
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
    return sum(1 for pk in pending if publish(pk))


def prune(max_age_days: int) -> int:
    """Delete sent messages and delivery counts older than max_age_days."""
    from .models import Delivery

    cutoff = timezone.now() - timedelta(days=max_age_days)
    deleted, _ = OutboxMessage.objects.filter(status=OutboxStatus.SENT, sent_at__lt=cutoff).delete()
    Delivery.objects.filter(first_at__lt=cutoff).delete()
    return deleted
