"""Queued tasks whose message is gone: failed, so none waits in the console for ever.

A record says QUEUED from its task's publish until a worker starts the task (RETRY from a
retry's publish). When the message leaves the broker without reaching a worker (`celery purge`,
a Redis restarted without its data, a message RabbitMQ could route to no queue, a send that
timed out and never arrived), nothing writes the record again: the console showed the task
queued for ever, and the readiness check's queue age grew without end. The sweep that finds
lost tasks (beat, every TASKCONSOLE_LOST_SWEEP_EVERY seconds) fails these too: queued for
longer than TASKCONSOLE_LOST_AFTER, in a queue the broker says is empty, reported by no worker
as reserved or running and, on Redis, not among the messages workers took and have not
acknowledged.

A queue that still holds messages is left alone (finding one message in it would mean reading
them all): its old records are failed once it has been drained. A worker that cannot answer
(a solo pool inside a long task) does not report what it reserved; on Redis its unacknowledged
messages still say so. RabbitMQ keeps those to itself, but says how many consumers a queue
has: a queue with more consumers than workers that answered for it is left alone until they
all answer. Should such a task start after all, its outcome replaces the failure (the worker's
write is not guarded against a finished record).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import Counter, defaultdict
from datetime import timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from .lost import ask_workers_holding, fail_results
from .models import VANISHED, TaskRecord, TaskStatus

logger = logging.getLogger(__name__)

#: A retry's message waits in its queue (or a worker holds it until its countdown) like a
#: first publish's; a task with an ETA is SCHEDULED, held by a worker until then.
WAITING_IN_QUEUE = (TaskStatus.QUEUED, TaskStatus.RETRY)

#: Records looked at per sweep, oldest first; the next sweep takes the rest.
LIMIT = 1000


class TaskVanished(Exception):
    """Stored as the task's result: its message left the queue without reaching a worker."""


def sweep(after: float | None = None, limit: int = LIMIT) -> int:
    """Fail the queued records whose message no queue or worker holds; returns how many."""
    if after is None:
        after = float(getattr(settings, "TASKCONSOLE_LOST_AFTER", 300))
    cutoff = timezone.now() - timedelta(seconds=after)
    by_queue: dict[str, list[str]] = defaultdict(list)
    for task_id, queue in (
        TaskRecord.objects.filter(status__in=WAITING_IN_QUEUE)
        .filter(Q(eta__isnull=True, created_at__lt=cutoff) | Q(eta__lt=cutoff))
        .exclude(queue="")
        .order_by("created_at")
        .values_list("task_id", "queue")[:limit]
    ):
        by_queue[queue].append(task_id)
    if not by_queue:
        return 0
    gone = not_held(by_queue)
    if not gone:
        return 0
    failed = TaskRecord.objects.filter(task_id__in=gone, status__in=WAITING_IN_QUEUE).update(
        status=TaskStatus.FAILURE, exception=VANISHED, finished_at=timezone.now()
    )
    fail_results(gone, TaskVanished(VANISHED))
    logger.warning(
        "%d queued task(s) whose message is in no queue and held by no worker marked vanished",
        failed,
    )
    return failed


def not_held(by_queue: dict[str, list[str]]) -> list[str]:
    """Of these task ids (by the queue their message went to), those whose message is in no
    queue and with no worker: its queue is empty, no worker reports it reserved or running,
    it is not among Redis's messages taken and not acknowledged, and on a broker without that
    record (RabbitMQ) every consumer of its queue answered. Empty when the broker or the
    workers could not say.
    """
    with current_app.connection_for_read() as connection:  # one for every queue asked about
        states = {queue: queue_state(queue, connection) for queue in by_queue}
        # queue name -> its consumers, for the queues the broker says are empty
        empty = {queue: state[1] for queue, state in states.items() if state and state[0] == 0}
        candidates = [task_id for queue in empty for task_id in by_queue[queue]]
        if not candidates:
            return []
        asked = ask_workers_holding(candidates)
        unacked = _unacknowledged(candidates, connection)
        if asked is None or unacked is None:
            return []
        held, answered = asked
        taken, indexed = unacked
        if not indexed:
            # No record of what workers took: every consumer of the queue must have answered.
            silent = _silent_consumers(empty, answered, connection)
            if silent is None:
                return []
            candidates = [
                task_id for queue in empty if queue not in silent for task_id in by_queue[queue]
            ]
    return [task_id for task_id in candidates if task_id not in held and task_id not in taken]


def queue_is_empty(queue: str, connection: Any = None) -> bool:
    """The broker says the queue holds no message; False when it cannot say.

    On `connection` when given (one for several queues), else on a connection of its own.
    """
    if connection is None:
        try:
            with current_app.connection_for_read() as conn:
                conn.ensure_connection(max_retries=1, timeout=3)
                return queue_is_empty(queue, conn)
        except Exception:
            return False  # a broker that does not answer says nothing
    state = queue_state(queue, connection)
    return state is not None and state[0] == 0


def queue_state(queue: str, connection: Any) -> tuple[int, int] | None:
    """(messages ready, consumers) as the broker says; None when it cannot say.

    A queue the broker does not know holds nothing. Redis says 0 consumers.
    """
    try:
        channel = connection.channel()
        try:
            ok = channel.queue_declare(queue=queue, passive=True)
            return ok.message_count, ok.consumer_count
        finally:
            with contextlib.suppress(Exception):
                channel.close()  # RabbitMQ has closed it already after a NOT_FOUND
    except Exception as exc:
        # A queue the broker does not know (RabbitMQ: NOT_FOUND) holds nothing; a broker that
        # does not answer says nothing.
        text = str(exc)
        if "NOT_FOUND" in text or "404" in text or "no queue" in text.lower():
            return 0, 0
        return None


def _unacknowledged(task_ids: list[str], connection: Any) -> tuple[set[str], bool] | None:
    """Of these ids, those in Redis's hash of messages taken and not acknowledged.

    With it, whether the broker has such a hash: RabbitMQ keeps them to itself (an empty set,
    False). None when Redis did not answer.
    """
    wanted = set(task_ids)
    try:
        channel = connection.default_channel
        key = getattr(channel, "unacked_key", None)
        if key is None:
            return set(), False
        found = set()
        for _, value in channel.client.hscan_iter(key, count=500):
            task_id = _message_id(value)
            if task_id in wanted:
                found.add(task_id)
        return found, True
    except Exception as exc:
        logger.warning("Could not read the broker's unacknowledged messages: %s", exc)
        return None


def _silent_consumers(
    consumers: dict[str, int], answered: set[str], connection: Any
) -> set[str] | None:
    """Of these queues (name -> consumers), those with more consumers than the workers that
    `answered` which tasks they hold have among them: a worker too busy to answer (a solo pool
    in a long task) may hold their messages. None when the question failed.

    Only the workers that answered the first question count: one that missed it and answers
    this one may hold a task the first answers did not name. The consumers are counted again
    afterwards, the larger count kept: a worker that started meanwhile hides no silent one.
    """
    counted: Counter[str] = Counter()
    if answered:
        try:
            inspect = current_app.control.inspect(timeout=1.0, destination=sorted(answered))
            replies = inspect.active_queues() or {}
        except Exception as exc:
            logger.warning("Could not ask the workers which queues they consume: %s", exc)
            return None
        counted.update(
            queue["name"]
            for worker, queues in replies.items()
            if worker in answered
            for queue in (queues or [])
            if isinstance(queue, dict) and "name" in queue
        )
    now = {queue: queue_state(queue, connection) for queue in consumers}
    silent = set()
    for queue, before in consumers.items():
        state = now[queue]
        total = max(before, state[1]) if state is not None else None
        if total is None or total > counted[queue]:
            silent.add(queue)
            logger.info(
                "Queue %s: %s consumer(s), %d answered; its old queued records wait for a "
                "sweep in which every consumer answers",
                queue,
                "?" if total is None else total,
                counted[queue],
            )
    return silent


def _message_id(value: bytes | str) -> str | None:
    try:
        message = json.loads(value)[0]
        return message["headers"]["id"]
    except (ValueError, LookupError, TypeError):
        return None
