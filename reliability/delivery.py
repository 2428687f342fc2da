"""Delivery policy as a product default: which tasks may run twice, and which may never.

Celery acknowledges a message when a worker receives it (early ack): a worker that dies loses
the task rather than run it again. Early ack alone still lets a message run twice: a Redis
visibility timeout shorter than a countdown hands it to a second worker (kombu#337), a worker's
main process killed between a child starting the task and the acknowledgement leaves it to be
redelivered, an outbox re-send can cross a slow first copy. So the app's default task class
(``Celery(task_cls=...)`` in myproject/celery.py) is ``AtMostOnceTask``: early ack plus a claim
on the task id taken before the body runs, and a second delivery of a claimed run is dropped.
Every task that does not say otherwise is at most once. A task that is safe to run again
declares it::

    @shared_task(base=IdempotentTask)
    def rebuild_index(pk): ...

and is acknowledged only after it ran (acks_late) and put back on the queue when its worker
dies (reject_on_worker_lost), so it is never lost. A task that kills its worker every time
(a poison pill) is set aside after RELIABILITY_MAX_DELIVERIES deliveries: it fails with
DeadLettered, visible in the console with its reason, and a DeadLetter row is written.

Both classes wait for the database (RELIABILITY_DATABASE_WAIT seconds at most) rather than run
a task whose claim or delivery count could not be written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from celery.contrib.django.task import DjangoTask
from celery.exceptions import Ignore
from django.conf import settings
from django.db import (
    IntegrityError,
    connections,
    router,
    transaction,
)
from django.db.models import F
from django.utils import timezone
from django.utils.module_loading import autodiscover_modules
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from taskconsole.dbwait import waiting_for_database

from . import outbox
from .models import DeadLetter, Delivery
from .results import UPSERT_VENDORS

logger = logging.getLogger(__name__)
T = TypeVar("T")


class DeliveryPolicy:
    """The three ways a task can be acknowledged, as shown in the console."""

    AT_MOST_ONCE = "at-most-once"
    AT_LEAST_ONCE = "at-least-once"
    ACKS_LATE_ONLY = "acks-late"
    EARLY_ACK_ONLY = "early-ack"

    labels = {
        AT_MOST_ONCE: _("At most once: never runs twice; lost if its worker dies"),
        AT_LEAST_ONCE: _("Idempotent: never lost; may run again after a worker dies"),
        ACKS_LATE_ONLY: _("Acknowledged late without requeue on worker loss"),
        EARLY_ACK_ONLY: _(
            "Early ack without a claim (not the product's task class): a redelivered message "
            "runs again"
        ),
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
    if isinstance(task, AtMostOnceTask) and not task.name.startswith("celery."):
        return DeliveryPolicy.AT_MOST_ONCE
    return DeliveryPolicy.EARLY_ACK_ONLY


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


def _waiting_for_database(write: Callable[[], T]) -> T:
    """Run `write`, waiting (with backoff) while the database is unreachable.

    The message is already acknowledged (early ack) or will be requeued only if the worker
    dies (acks_late): giving up here would lose the task, so a worker waits for the database
    as the result backend does (reliability.results).
    """
    seconds = float(getattr(settings, "RELIABILITY_DATABASE_WAIT", 120))
    return waiting_for_database(write, seconds=seconds, model=Delivery)


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


def dead_letter_reason(count: int, limit: int) -> str:
    """Why a task was set aside, in the worker's language (the site's: a worker serves no one)."""
    return ngettext(
        "Delivered %(count)d times; its worker died during the previous delivery (limit "
        "%(limit)d).",
        "Delivered %(count)d times; its worker died during each of the previous %(previous)d "
        "deliveries (limit %(limit)d).",
        count - 1,
    ) % {"count": count, "previous": count - 1, "limit": limit}


def dead_letter(task: DjangoTask, delivery: Delivery, reason: str) -> None:
    DeadLetter.objects.get_or_create(
        task_id=task.request.id,
        defaults={"task_name": task.name, "reason": reason, "deliveries": delivery.count},
    )
    logger.error("Task %s[%s] set aside: %s", task.name, task.request.id, reason)


class IdempotentTask(DjangoTask):
    """Never lost: acknowledged after it runs and requeued when its worker dies."""

    abstract = True
    idempotent = True
    acks_late = True
    reject_on_worker_lost = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.request.is_eager or self.request.called_directly:
            return super().__call__(*args, **kwargs)
        delivery = _waiting_for_database(lambda: count_delivery(self.request))
        if outbox.came_through_outbox(self.request):
            _waiting_for_database(lambda: outbox.forget_args(self.request.id))
        if delivery.finished_at is not None:
            # A duplicate message (outbox re-send, redelivery) of a run that already finished.
            # Ignore, not return: the first run's stored result must not be overwritten.
            logger.info(
                "Task %s[%s] already ran; skipping a duplicate.", self.name, self.request.id
            )
            raise Ignore()
        limit = getattr(self, "max_deliveries", None) or settings.RELIABILITY_MAX_DELIVERIES
        if delivery.count > limit:
            reason = dead_letter_reason(delivery.count, limit)
            dead_letter(self, delivery, reason)
            raise DeadLettered(reason)
        result = super().__call__(*args, **kwargs)
        _waiting_for_database(
            lambda: Delivery.objects.filter(pk=delivery.pk).update(finished_at=timezone.now())
        )
        return result


class AtMostOnceTask(DjangoTask):
    """Never runs twice: early ack plus a claim on the task id taken before the body runs.

    The app's default task class. A task that sets acks_late itself chose redelivery, and
    Celery's own tasks (chord bookkeeping) retry themselves: neither is claimed. The class says
    acks_late = False, so CELERY_TASK_ACKS_LATE does not reach the tasks built on it
    (reliability.W002 says so).
    """

    abstract = True
    idempotent = False
    acks_late = False
    reject_on_worker_lost = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if (
            request.is_eager
            or request.called_directly
            or not request.id
            or self.acks_late
            or self.name.startswith("celery.")
        ):
            return super().__call__(*args, **kwargs)
        if not _waiting_for_database(lambda: claim(request)):
            logger.warning(
                "Task %s[%s] was delivered again; it is not idempotent, so it does not run twice.",
                self.name,
                request.id,
            )
            # Ignore, not return: the first run's state and result stay as they are.
            raise Ignore()
        if outbox.came_through_outbox(request):
            _waiting_for_database(lambda: outbox.forget_args(request.id))
        return super().__call__(*args, **kwargs)


def starts_with_a_database_write(task: Any) -> bool:
    """Whether the task's first query is its claim (or delivery count), which retries on a new
    connection when the old one is broken (see reliability.apps)."""
    return isinstance(task, IdempotentTask) or policy_of(task) == DeliveryPolicy.AT_MOST_ONCE


def claim(request: Any) -> bool:
    """Take this run of the task (id + retry number); False when it was taken before.

    One INSERT that ignores a conflict (ON CONFLICT DO NOTHING, where the database has it):
    it runs before every task, so it skips the ORM's savepoint and exception path.
    """
    alias = router.db_for_write(Delivery)
    connection = connections[alias]
    if connection.vendor not in UPSERT_VENDORS:
        try:
            with transaction.atomic(using=alias):
                Delivery.objects.create(key=_delivery_key(request), task_id=request.id, count=1)
        except IntegrityError:
            return False
        return True
    q = connection.ops.quote_name
    table, key = q(Delivery._meta.db_table), q("key")
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({key}, {q('task_id')}, {q('count')}, {q('first_at')}) "
            f"VALUES (%s, %s, 1, %s) ON CONFLICT ({key}) DO NOTHING",
            [_delivery_key(request), request.id, now],
        )
        return cursor.rowcount == 1
