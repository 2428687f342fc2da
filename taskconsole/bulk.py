"""Publish many calls of one task at once: pushed to the broker in chunks, recorded in bulk.

A loop of ``delay()`` pays, per task, Celery building the message from scratch, the publish
signals, kombu preparing and wrapping the message, two random ids (a system call each), the
console's record and one broker round trip. ``enqueue_many`` builds the message once per call
with Celery itself and fills in, per task, only what differs (the id, the arguments and their
text form)::

    from taskconsole.bulk import enqueue_many

    ids = enqueue_many(send_welcome, [(user.pk,) for user in new_users])

On Redis (the usual case; taskconsole.bulk_redis) the messages are written as kombu's Redis
transport writes them (the same JSON envelope, base64 body, uuid4 delivery tag), from one
template per round of RECORD_BATCH tasks, and each chunk of ``chunk`` messages goes to the
queue's list in one LPUSH:
the whole chunk or none of it, in the order of the calls. The console's publish handler is not
called per task: the round's records are built directly, with the same fields, the same
redaction of secrets (in the record and in the message's text form of its arguments) and the
same buffering rules, and written before the round's messages with one INSERT, in one
transaction. That path is taken only where it is exactly equivalent: a JSON body without
compression, the queue reached directly (no exchange routing, priority or queue expiry for
kombu to apply), and no other receiver of Celery's ``before_task_publish`` or
``after_task_publish`` signal (tracing, a test's recorder), which expects to see every message.

Otherwise (RabbitMQ, a priority, a topic exchange, another signal receiver...) every message
goes through kombu's ``Producer.publish`` inside ``Producer.batch()`` (on Redis, pipelined
round trips; elsewhere one by one) and through Celery's publish signals.

Options (queue, countdown, eta, expires, priority...) apply to every call; arguments the task
does not take are refused before anything is sent, as ``delay()`` refuses them. If the broker
refuses a chunk, the error is raised and the recorded tasks that were not published (that chunk
and, on Redis, the rest of its round) are marked failed ("not published"), so the console never
shows a task as queued that the broker does not have; chunks published before it stay published
(their ids are on the exception as ``published_ids``).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery import signals
from django.utils.translation import gettext as _

from .redaction import text_of
from .unsent import not_published

logger = logging.getLogger(__name__)

DEFAULT_CHUNK = 1000
#: Tasks per round of the Redis path: their records are written in one transaction.
RECORD_BATCH = 20_000


class BulkPublishError(Exception):
    """The broker refused a chunk; ``published_ids`` lists the tasks it did take."""

    def __init__(self, message: str, published_ids: list[str]) -> None:
        super().__init__(message)
        self.published_ids = published_ids


def _split(call: Any) -> tuple[tuple, dict]:
    # A call is args (a tuple or list) or (args, kwargs) given as a dict-carrying pair.
    if isinstance(call, dict):
        return (), call
    if (
        isinstance(call, tuple | list)
        and len(call) == 2
        and isinstance(call[0], tuple | list)
        and isinstance(call[1], dict)
    ):
        return tuple(call[0]), call[1]
    if isinstance(call, tuple | list):
        return tuple(call), {}
    raise TypeError(f"a call is an args tuple, a kwargs dict or (args, kwargs), not {call!r}")


# Task ids and delivery tags ------------------------------------------------------------------

# uuid4 layout: the version nibble (byte 6) is 4, the variant bits (byte 8) are 10.
_UUID_KEEP = bytes([0xFF] * 6 + [0x0F, 0xFF, 0x3F] + [0xFF] * 7)
_UUID_SET = bytes([0] * 6 + [0x40, 0, 0x80] + [0] * 7)


def uuid4s(count: int) -> list[str]:
    """``count`` random uuid4 strings, as ``str(uuid.uuid4())`` makes them.

    One read of the system's random source for all of them: uuid4() reads it once per id, and
    that system call is most of what an id costs (on some machines, tens of microseconds).
    """
    size = 16 * count
    raw = int.from_bytes(os.urandom(size), "big")
    raw = raw & int.from_bytes(_UUID_KEEP * count, "big") | int.from_bytes(_UUID_SET * count, "big")
    text = raw.to_bytes(size, "big").hex()
    return [
        f"{text[i : i + 8]}-{text[i + 8 : i + 12]}-{text[i + 12 : i + 16]}-"
        f"{text[i + 16 : i + 20]}-{text[i + 20 : i + 32]}"
        for i in range(0, 32 * count, 32)
    ]


# What every message of one call shares -------------------------------------------------------


@dataclass
class Plan:
    """Celery's message for the task without a call in it, and where it goes."""

    name: str
    #: The message headers; id, root_id, argsrepr and kwargsrepr are set per task.
    headers: dict[str, Any]
    reply_to: str
    embed: dict[str, Any]
    queue: Any
    exchange: Any
    routing_key: str
    serializer: str
    compression: str | None
    delivery_mode: Any
    priority: int | None
    expiration: float | None
    #: The root of the tree the tasks join (published from inside a task), else None.
    root_id: str | None
    argsrepr_max: int
    kwargsrepr_max: int


def _plan(task: Any, first: tuple[tuple, dict], options: dict[str, Any]) -> Plan:
    """What Celery's ``apply_async``/``send_task`` would decide for every call (see celery.app)."""
    app = task.app
    conf = app.conf
    name = task.name
    exec_options = dict(task._get_exec_options())
    exec_options.update(options)
    ignore_result = exec_options.pop("ignore_result", None)
    parent = app.current_worker_task
    if parent is not None and conf.task_inherit_parent_priority:
        exec_options.setdefault("priority", parent.request.delivery_info.get("priority"))
    routed = app.amqp.router.route(exec_options, name, first[0], first[1], task)
    expires = routed.pop("expires", None)
    headers, properties, body, _sent = app.amqp.create_task_message(
        "template",
        name,
        (),
        {},
        countdown=routed.pop("countdown", None),
        eta=routed.pop("eta", None),
        expires=expires,
        time_limit=routed.pop("time_limit", None),
        soft_time_limit=routed.pop("soft_time_limit", None),
        ignore_result=conf.task_ignore_result if ignore_result is None else ignore_result,
        origin=None,
    )
    root_id = None
    if parent is not None and parent.request.id:
        # Published from inside a task: the children belong to its tree, as with delay().
        headers["parent_id"] = parent.request.id
        root_id = parent.request.root_id or parent.request.id
    headers.update(routed.pop("headers", None) or {})

    queue = routed.pop("queue", None)
    if queue is None or isinstance(queue, str):
        queue = app.amqp.queues[queue or conf.task_default_queue]
    exchange = routed.pop("exchange", None)
    routing_key = routed.pop("routing_key", None)
    exchange_type = routed.pop("exchange_type", None) or queue.exchange.type
    if (not exchange or not routing_key) and exchange_type == "direct":
        # Celery's own rule: the queue itself, through the default exchange (where a direct
        # exchange would route it, without a lookup of the exchange's bindings per message).
        exchange, routing_key = "", queue.name
    elif exchange is None:
        exchange = queue.exchange.name or app.amqp.default_exchange
        routing_key = routing_key or queue.routing_key or conf.task_default_routing_key
    delivery_mode = (
        routed.pop("delivery_mode", None)
        or queue.exchange.delivery_mode
        or conf.task_default_delivery_mode
    )
    return Plan(
        name=name,
        headers=headers,
        reply_to=properties.get("reply_to") or app.thread_oid,
        embed=body[2],
        queue=queue,
        exchange=exchange,
        routing_key=routing_key,
        serializer=routed.pop("serializer", None) or conf.task_serializer,
        compression=routed.pop("compression", None) or conf.task_compression,
        delivery_mode=delivery_mode,
        priority=routed.pop("priority", None),
        expiration=_expiration(app, expires),
        root_id=root_id,
        argsrepr_max=app.amqp.argsrepr_maxsize,
        kwargsrepr_max=app.amqp.kwargsrepr_maxsize,
    )


def _expiration(app: Any, expires: Any) -> float | None:
    # The message's TTL, as send_task derives it from `expires` (used by RabbitMQ).
    if expires is None:
        return None
    if isinstance(expires, str):
        expires = datetime.fromisoformat(expires)
    if isinstance(expires, datetime):
        expires = (expires - app.now()).total_seconds()
    return max(float(expires), 0.0)


# Publishing ----------------------------------------------------------------------------------


class Refused(Exception):
    """A round of publishing failed: ``count`` tasks of it are not published."""

    def __init__(self, count: int, recorded: list[str], error: Exception) -> None:
        super().__init__(str(error))
        self.count = count
        #: The ids whose records exist (or are buffered): marked failed.
        self.recorded = recorded
        self.error = error


def enqueue_many(
    task: Any,
    calls: Iterable[Sequence | dict],
    *,
    chunk: int = DEFAULT_CHUNK,
    producer: Any = None,
    **options: Any,
) -> list[str]:
    """Publish ``task`` once per call; returns the task ids in the order of ``calls``.

    Each call is a tuple of positional arguments, a dict of keyword arguments, or a pair
    ``(args, kwargs)``. Arguments must serialize to JSON, as for ``delay()``. ``producer``
    is a kombu Producer to publish with (by default one from the app's pool). ``chunk`` is
    how many messages go to the broker in one round trip.

    From GC_PAUSE_FROM calls on, Python's cyclic garbage collector is paused meanwhile (in the
    whole process: the collector is one per process), as the call makes a few objects per
    task, none of them in a cycle, and each full collection they would trigger scans every
    object of the process.
    """
    if not hasattr(calls, "__len__"):
        calls = list(calls)
    large = len(calls) >= GC_PAUSE_FROM
    with cyclic_gc_paused() if large else contextlib.nullcontext():
        return _enqueue_many(task, calls, chunk, producer, options)


GC_PAUSE_FROM = 1000
_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False


def _gc_after_fork() -> None:
    """A child forked during a pause is not paused: the calls that paused it are not here."""
    global _gc_lock, _gc_pausers
    _gc_lock, paused = threading.Lock(), _gc_pausers > 0
    _gc_pausers = 0
    if paused and _gc_was_enabled:
        gc.enable()


os.register_at_fork(after_in_child=_gc_after_fork)


@contextlib.contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector until the last of the threads that paused it is done.

    Measured on 100,000 tasks: 19.7–24.3 µs a task with the collector, 17.4–19.2 without. Cycles
    made meanwhile, by any thread, are collected once it runs again.
    """
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


def _enqueue_many(
    task: Any, calls: Iterable[Sequence | dict], chunk: int, producer: Any, options: dict
) -> list[str]:
    calls = [_split(call) for call in calls]
    if not calls:
        return []
    check = getattr(task, "__header__", None) if getattr(task, "typing", False) else None
    if check is not None:
        # As apply_async does: a call the task cannot take is refused before anything is sent.
        for args, kwargs in calls:
            check(*args, **kwargs)
    plan = _plan(task, calls[0], options)
    published: list[str] = []
    with task.app.producer_or_acquire(producer) as producer:
        # Imported here: the fast path builds on this module's plan.
        from .bulk_redis import RedisPublisher

        publisher: RedisPublisher | _KombuPublisher | None
        publisher = RedisPublisher.for_producer(plan, producer, chunk, len(calls))
        if publisher is not None:
            step = chunk * max(1, RECORD_BATCH // chunk)
        else:
            publisher, step = _KombuPublisher(plan, producer), chunk
        try:
            for start in range(0, len(calls), step):
                group = calls[start : start + step]
                # Random ids handed out in sorted order: the console's records are then inserted
                # in the order of their unique task_id (and root_id) index, which a database
                # does much faster than at random places (about a third, on SQLite).
                publisher.publish(group, sorted(uuid4s(len(group))), published)
            publisher.finish(published)
        except Refused as refused:
            not_published(refused.recorded, refused.error)
            raise BulkPublishError(
                _("The broker refused %(count)d tasks: %(error)s")
                % {"count": refused.count, "error": refused.error},
                list(published),
            ) from refused.error
        except BaseException as exc:
            # Anything else (an interrupt...): no recorded task stays queued for ever.
            not_published(publisher.abandon(published), exc)
            raise
        finally:
            publisher.close()
    return published


class _KombuPublisher:
    """Any transport: kombu prepares and sends every message, the publish signals see it."""

    def __init__(self, plan: Plan, producer: Any) -> None:
        self.plan = plan
        self.producer = producer
        self.properties: dict[str, Any] = {"reply_to": plan.reply_to}
        if plan.priority is not None:
            self.properties["priority"] = plan.priority
        if plan.expiration is not None:
            self.properties["expiration"] = plan.expiration

    def publish(self, part: list, task_ids: list[str], published: list[str]) -> None:
        """Publish one chunk; raises Refused with what is not published."""
        plan, producer, properties = self.plan, self.producer, self.properties
        # The ids of the chunk recorded so far: failed, not queued, if the chunk is refused.
        attempted: list[str] = []
        try:
            with producer.batch(max_size=len(part)):
                for task_id, (args, kwargs) in zip(task_ids, part, strict=True):
                    headers = dict(plan.headers)
                    headers["id"] = task_id
                    headers["root_id"] = plan.root_id or task_id
                    headers["argsrepr"] = text_of(args, plan.argsrepr_max)
                    headers["kwargsrepr"] = text_of(kwargs, plan.kwargsrepr_max)
                    body = (args, kwargs, plan.embed)
                    attempted.append(task_id)
                    signals.before_task_publish.send(
                        sender=plan.name,
                        body=body,
                        exchange=plan.exchange,
                        routing_key=plan.routing_key,
                        declare=[],
                        headers=headers,
                        properties={},
                        retry_policy=None,
                    )
                    producer.publish(
                        body,
                        exchange=plan.exchange,
                        routing_key=plan.routing_key,
                        serializer=plan.serializer,
                        compression=plan.compression,
                        delivery_mode=plan.delivery_mode,
                        headers=headers,
                        correlation_id=task_id,
                        declare=[],
                        retry=False,
                        **properties,
                    )
        except Exception as exc:
            raise Refused(len(part), attempted, exc) from exc
        published += task_ids
        for task_id, (args, kwargs) in zip(task_ids, part, strict=True):
            signals.after_task_publish.send(
                sender=plan.name,
                body=(args, kwargs, plan.embed),
                exchange=plan.exchange,
                routing_key=plan.routing_key,
                headers={"id": task_id, "task": plan.name},
            )

    def finish(self, published: list[str]) -> None:
        """Every chunk is published as it comes."""

    def abandon(self, published: list[str]) -> list[str]:
        """Nothing waits: a chunk's recorded tasks are listed when it is refused."""
        return []

    def close(self) -> None:
        """Nothing to wait for."""
