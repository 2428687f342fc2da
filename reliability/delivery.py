"""Delivery policy as a product default: which tasks may run twice, and which may never.

Celery acknowledges a message when a worker receives it (early ack): a worker that dies loses
the task, but it never runs twice. That stays the default for every task that does not say
otherwise. A task that is safe to run again declares it::

    @shared_task(base=IdempotentTask)
    def rebuild_index(pk): ...

and is acknowledged only after it ran (acks_late) and put back on the queue when its worker
dies (reject_on_worker_lost), so it is never lost. A task that kills its worker every time
(a poison pill) is set aside after RELIABILITY_MAX_DELIVERIES deliveries: it fails with
DeadLettered, visible in the console with its reason, and a DeadLetter row is written.

``AtMostOnceTask`` adds a claim on the task id to the default early ack, so even a duplicate
message (an outbox re-send, a Redis visibility-timeout redelivery) never runs it twice.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from django.conf import settings
from django.db import IntegrityError, close_old_connections, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.module_loading import autodiscover_modules
from django.utils.translation import gettext_lazy as _

from . import outbox
from .models import DeadLetter, Delivery

logger = logging.getLogger(__name__)


class DeliveryPolicy:
    """The three ways a task can be acknowledged, as shown in the console."""

    AT_MOST_ONCE = "at-most-once"
    AT_LEAST_ONCE = "at-least-once"
    ACKS_LATE_ONLY = "acks-late"

    labels = {
        AT_MOST_ONCE: _("At most once: never runs twice; lost if its worker dies"),
        AT_LEAST_ONCE: _("Idempotent: never lost; may run again after a worker dies"),
        ACKS_LATE_ONLY: _("Acknowledged late without requeue on worker loss"),
    }


class DeadLettered(Exception):
    """The task was delivered too many times without finishing, so it was set aside."""


def is_idempotent(task: Any) -> bool:
    """Declared safe to run again: IdempotentTask, `idempotent = True`, or listed by name."""
    return bool(getattr(task, "idempotent", False)) or getattr(task, "name", None) in getattr(
        settings, "RELIABILITY_IDEMPOTENT_TASKS", ()
    )


def policy_of(task: Any) -> str:
    """The delivery policy of a task object (or of the app's task with that name)."""
    if isinstance(task, str):
        from myproject.celery import app

        autodiscover_modules("tasks")
        task = app.tasks.get(task)
        if task is None:
            return DeliveryPolicy.AT_MOST_ONCE
    if getattr(task, "acks_late", False):
        if getattr(task, "reject_on_worker_lost", False):
            return DeliveryPolicy.AT_LEAST_ONCE
        return DeliveryPolicy.ACKS_LATE_ONLY
    return DeliveryPolicy.AT_MOST_ONCE


def policy_label(task: Any) -> str:
    return str(DeliveryPolicy.labels[policy_of(task)])


def policies() -> list[tuple[str, str, bool]]:
    """(task name, policy, declared idempotent) for every registered task, for the pages."""
    from myproject.celery import app

    # Import every app's tasks.py (Celery's own import hook would run the checks again).
    autodiscover_modules("tasks")
    return [
        (name, policy_of(task), is_idempotent(task))
        for name, task in sorted(app.tasks.items())
        if not name.startswith("celery.")
    ]


def _delivery_key(request: Any) -> str:
    return f"{request.id}:{request.retries or 0}"[:300]


def count_delivery(request: Any) -> Delivery:
    """Add one to this run's delivery count, committed before the task body can kill us."""
    key = _delivery_key(request)
    with transaction.atomic():
        updated = Delivery.objects.filter(key=key).update(count=F("count") + 1)
        if not updated:
            try:
                with transaction.atomic():
                    Delivery.objects.create(key=key, task_id=request.id, count=1)
            except IntegrityError:
                Delivery.objects.filter(key=key).update(count=F("count") + 1)
    return Delivery.objects.get(key=key)


def dead_letter(task: Task, delivery: Delivery, reason: str) -> None:
    DeadLetter.objects.get_or_create(
        task_id=task.request.id,
        defaults={"task_name": task.name, "reason": reason, "deliveries": delivery.count},
    )
    logger.error("Task %s[%s] set aside: %s", task.name, task.request.id, reason)


class IdempotentTask(Task):
    """Never lost: acknowledged after it runs and requeued when its worker dies."""

    abstract = True
    idempotent = True
    acks_late = True
    reject_on_worker_lost = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.request.is_eager or self.request.called_directly:
            return super().__call__(*args, **kwargs)
        close_old_connections()
        delivery = count_delivery(self.request)
        outbox.forget_args(self.request.id)
        if delivery.finished_at is not None:
            # A duplicate message (outbox re-send, redelivery) of a run that already finished.
            logger.info(
                "Task %s[%s] already ran; skipping a duplicate.", self.name, self.request.id
            )
            return None
        limit = getattr(self, "max_deliveries", None) or settings.RELIABILITY_MAX_DELIVERIES
        if delivery.count > limit:
            reason = (
                f"delivered {delivery.count} times; its worker died during each of the "
                f"previous {delivery.count - 1} (limit {limit})"
            )
            dead_letter(self, delivery, reason)
            raise DeadLettered(reason)
        result = super().__call__(*args, **kwargs)
        Delivery.objects.filter(pk=delivery.pk).update(finished_at=timezone.now())
        return result


class AtMostOnceTask(Task):
    """Never runs twice: early ack plus a claim on the task id taken before the body runs."""

    abstract = True
    idempotent = False
    acks_late = False
    reject_on_worker_lost = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.request.is_eager or self.request.called_directly:
            return super().__call__(*args, **kwargs)
        close_old_connections()
        try:
            with transaction.atomic():
                Delivery.objects.create(
                    key=_delivery_key(self.request), task_id=self.request.id, count=1
                )
        except IntegrityError:
            logger.warning(
                "Task %s[%s] was delivered again; it is not idempotent, so it does not run twice.",
                self.name,
                self.request.id,
            )
            return None
        outbox.forget_args(self.request.id)
        return super().__call__(*args, **kwargs)
