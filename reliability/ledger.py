"""The ledger tasks of the chaos suite and the delivery tests, one per delivery policy.

Each run of one of them adds a LedgerEntry, so that a scenario can count how many times a task
ran and which ones never did. They are not in a worker's task list unless it is asked for them
(`celery -A myproject worker --include reliability.ledger`, as the chaos suite and the tests
do): `kill=True` makes the task SIGKILL its own worker process, which a production worker has
no reason to offer.
"""

from __future__ import annotations

import os
import signal
import time

from celery import Task, shared_task

from .delivery import AtMostOnceTask, IdempotentTask
from .models import LedgerEntry


def write_ledger(task, run: str, sleep: float, kill: bool) -> int:
    """Record this execution, then work for `sleep` seconds (or kill our own process)."""
    attempt = LedgerEntry.objects.filter(run=run, task_id=task.request.id).count() + 1
    entry = LedgerEntry.objects.create(
        run=run, task_id=task.request.id, attempt=attempt, worker_pid=os.getpid()
    )
    if kill:
        os.kill(os.getpid(), signal.SIGKILL)
    if sleep:
        time.sleep(sleep)
    LedgerEntry.objects.filter(pk=entry.pk).update(done=True)
    return attempt


@shared_task(bind=True)
def ledger_default(self, run: str, sleep: float = 0.0, kill: bool = False, **extra) -> int:
    """The product's default (the app's task class, AtMostOnceTask): acknowledged on receipt,
    claimed before it runs. Extra keyword arguments are ignored."""
    return write_ledger(self, run, sleep, kill)


@shared_task(bind=True, base=Task)
def ledger_plain(self, run: str, sleep: float = 0.0, kill: bool = False) -> int:
    """Celery's own Task, without the product's claim: what early ack alone does."""
    return write_ledger(self, run, sleep, kill)


# Declared idempotent only so the system check stays quiet: a second run just adds a ledger row,
# which is what the chaos suite counts.
@shared_task(bind=True, acks_late=True, reject_on_worker_lost=False, idempotent=True)
def ledger_acks_late(self, run: str, sleep: float = 0.0, kill: bool = False) -> int:
    """acks_late alone: a dead child's task is acknowledged as failed, not redelivered."""
    return write_ledger(self, run, sleep, kill)


@shared_task(bind=True, base=IdempotentTask)
def ledger_idempotent(self, run: str, sleep: float = 0.0, kill: bool = False) -> int:
    """The product's IdempotentTask: acks_late with reject_on_worker_lost and a delivery cap."""
    return write_ledger(self, run, sleep, kill)


@shared_task(bind=True, base=AtMostOnceTask)
def ledger_at_most_once(self, run: str, sleep: float = 0.0, kill: bool = False) -> int:
    """The product's AtMostOnceTask: early ack plus a claim on the task id."""
    return write_ledger(self, run, sleep, kill)
