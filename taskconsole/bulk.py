"""Publish many calls of one task at once: pipelined to the broker, recorded in bulk.

A loop of ``delay()`` pays, per task, Celery building the message from scratch, a queue
declaration check and one broker round trip. ``enqueue_many`` builds one message with Celery
itself and copies it per call (new id, arguments and their text form), and publishes through
kombu's ``Producer.batch()``, which on Redis sends up to ``chunk`` messages per pipelined round
trip (other transports publish one by one, still without the per-call overhead)::

    from taskconsole.bulk import enqueue_many

    ids = enqueue_many(send_welcome, [(user.pk,) for user in new_users])

Every message still goes through Celery's ``before_task_publish``/``after_task_publish``
signals, so the console records each task (in its publish buffer, written in bulk) and redacts
secrets in the message's text form exactly as for ``delay()``. Options (queue, countdown, eta,
expires, priority...) apply to every call. If the broker refuses a chunk, the error is raised
and the tasks of that chunk that were recorded are marked failed ("not published"), so the
console never shows a task as queued that the broker does not have; chunks published before it
stay published (their ids are on the exception as ``published_ids``).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from celery import signals
from celery.utils.saferepr import saferepr
from django.utils import timezone
from django.utils.translation import gettext as _

from . import buffer
from .models import TaskRecord, TaskStatus

DEFAULT_CHUNK = 1000


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
    is a kombu Producer to publish with (by default one from the app's pool).
    """
    app = task.app
    calls = [_split(call) for call in calls]
    if not calls:
        return []
    name = task.name
    exec_options = dict(task._get_exec_options())
    exec_options.update(options)
    ignore_result = exec_options.pop("ignore_result", None)
    first_args, first_kwargs = calls[0]
    routed = app.amqp.router.route(exec_options, name, first_args, first_kwargs, task)
    template = app.amqp.create_task_message(
        "template",
        name,
        (),
        {},
        countdown=routed.pop("countdown", None),
        eta=routed.pop("eta", None),
        expires=routed.pop("expires", None),
        time_limit=routed.pop("time_limit", None),
        soft_time_limit=routed.pop("soft_time_limit", None),
        ignore_result=app.conf.task_ignore_result if ignore_result is None else ignore_result,
        origin=None,
    )
    headers0, properties0, body0, _sent = template
    parent = app.current_worker_task
    if parent is not None and parent.request.id:
        # Published from inside a task: the children belong to its tree, as with delay().
        headers0["parent_id"] = parent.request.id
    root_id = parent.request.root_id if parent is not None else None
    embed = body0[2]
    queue = routed.pop("queue", None)
    exchange = routed.pop("exchange", None)
    routing_key = routed.pop("routing_key", None)
    if isinstance(queue, str) or queue is None:
        queue = app.amqp.queues[queue or app.conf.task_default_queue]
    exchange = queue.exchange.name if exchange is None else exchange
    routing_key = routing_key or queue.routing_key
    if queue.exchange.type == "direct" and routing_key == queue.routing_key:
        # The queue itself, through the default exchange: where a direct exchange would route
        # it, without the transport looking up the exchange's bindings for every message (on
        # Redis, one extra round trip each).
        exchange, routing_key = "", queue.name
    publish_options = {
        key: value
        for key, value in routed.items()
        if key in ("priority", "delivery_mode", "serializer", "compression", "headers")
    }
    serializer = publish_options.pop("serializer", None) or app.conf.task_serializer
    extra_headers = publish_options.pop("headers", None) or {}
    repr_max = app.amqp.argsrepr_maxsize
    kwrepr_max = app.amqp.kwargsrepr_maxsize

    ids: list[str] = []
    published: list[str] = []
    with app.producer_or_acquire(producer) as producer:
        for start in range(0, len(calls), chunk):
            part = calls[start : start + chunk]
            chunk_ids: list[str] = []
            try:
                with producer.batch(max_size=chunk):
                    for args, kwargs in part:
                        task_id = str(uuid.uuid4())
                        headers = copy.copy(headers0)
                        headers.update(extra_headers)
                        headers["id"] = task_id
                        headers["root_id"] = root_id or task_id
                        headers["argsrepr"] = _text(args, repr_max)
                        headers["kwargsrepr"] = _text(kwargs, kwrepr_max)
                        body = (args, kwargs, embed)
                        signals.before_task_publish.send(
                            sender=name,
                            body=body,
                            exchange=exchange,
                            routing_key=routing_key,
                            declare=[],
                            headers=headers,
                            properties={},
                            retry_policy=None,
                        )
                        chunk_ids.append(task_id)
                        producer.publish(
                            body,
                            exchange=exchange,
                            routing_key=routing_key,
                            serializer=serializer,
                            headers=headers,
                            correlation_id=task_id,
                            reply_to=properties0.get("reply_to") or "",
                            declare=[],
                            retry=False,
                            **publish_options,
                        )
            except Exception as exc:
                _not_published(chunk_ids, exc)
                raise BulkPublishError(
                    _("The broker refused %(count)d tasks: %(error)s")
                    % {"count": len(part), "error": exc},
                    published,
                ) from exc
            published += chunk_ids
            for task_id, (args, kwargs) in zip(chunk_ids, part, strict=True):
                signals.after_task_publish.send(
                    sender=name,
                    body=(args, kwargs, embed),
                    exchange=exchange,
                    routing_key=routing_key,
                    headers={"id": task_id, "task": name},
                )
            ids += chunk_ids
    return ids


def _text(value: Any, limit: int) -> str:
    # JSON-ready arguments repr safely; saferepr (several times slower) only for long ones.
    text = repr(value)
    return text if len(text) <= limit else saferepr(value, limit)


def _not_published(task_ids: list[str], exc: BaseException) -> None:
    """Mark the records of a refused chunk failed, so none stays queued for ever."""
    if not task_ids:
        return
    buffer.flush()
    TaskRecord.objects.filter(task_id__in=task_ids).update(
        status=TaskStatus.FAILURE,
        exception=f"Not published: {type(exc).__name__}: {exc}"[:2000],
        finished_at=timezone.now(),
    )
