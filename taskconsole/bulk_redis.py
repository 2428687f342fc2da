"""enqueue_many's fast path on Redis: the messages kombu's Redis transport would write, built
from one template per round and pushed one LPUSH per chunk, and the console's records built
directly, as taskconsole.capture would build them. taskconsole.bulk decides when it applies.
"""

from __future__ import annotations

import base64
import contextvars
import json
import logging
import os
import re
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring_ascii
from operator import itemgetter
from typing import Any

from celery import signals
from celery.utils.saferepr import saferepr
from django.db import connections, router
from django.utils import timezone
from kombu.entity import maybe_delivery_mode
from kombu.transport.redis import Channel as RedisChannel
from kombu.utils.json import JSONEncoder as KombuJSONEncoder

from . import buffer, capture
from .bulk import Plan, Refused, uuid4s
from .models import TaskRecord, TaskStatus
from .redaction import clip_text, redact, secret_pattern, text_of

logger = logging.getLogger(__name__)


def _only_console_receivers(signal: Any, name: str, allowed: tuple) -> bool:
    receivers = getattr(signal, "_live_receivers", None)
    if receivers is None:
        return False
    return all(receiver in allowed for receiver in receivers(name))


@dataclass
class _Round:
    messages: list[bytes]
    task_ids: list[str]
    #: The writing of its records, when a thread does it.
    saved: Future | None
    recorded: bool


class RedisPublisher:
    """Writes the messages kombu's Redis transport would write, one LPUSH per chunk.

    kombu's Redis channel stores a message as the JSON of an envelope (kombu's
    ``Channel.prepare_message`` plus what ``basic_publish`` adds: the base64 body, its
    encoding, the delivery info and a uuid4 delivery tag) pushed on the left of the queue's
    list. The envelope is made once per round, by the same JSON encoder, with placeholders for
    what differs per task; test_bulk compares the result with a message ``delay()`` wrote.

    A round is RECORD_BATCH tasks (whole chunks): their records are written first, in one
    transaction (a database writes a few large transactions much faster than many small
    ones), then their chunks are pushed.
    """

    FIELDS = ("body", "id", "tag", "argsrepr", "kwargsrepr")

    def __init__(self, plan: Plan, producer: Any, chunk: int, recording: bool, total: int) -> None:
        self.plan = plan
        self.producer = producer
        self.chunk = chunk
        self.recording = recording and not capture._ignored(plan.name)
        self.embed_json = _kombu_encoder.encode(plan.embed)
        self.delivery_mode = maybe_delivery_mode(plan.delivery_mode)
        self.key = plan.queue.name
        if self.recording:
            self.records = _RecordPlan(plan)
        #: Tasks of the call not in a round yet.
        self.remaining = total
        #: A round whose records are being written, and which goes out once they are; the
        #: round being pushed.
        self._pending: _Round | None = None
        self._pushing: _Round | None = None
        self._writer: ThreadPoolExecutor | None = None

    @classmethod
    def for_producer(
        cls, plan: Plan, producer: Any, chunk: int, total: int
    ) -> RedisPublisher | None:
        """The fast path when it writes exactly what kombu would, else None."""
        try:
            channel_class = producer.connection.transport.Channel
            transport_options = producer.connection.transport_options or {}
        except AttributeError:
            return None
        if not (isinstance(channel_class, type) and issubclass(channel_class, RedisChannel)):
            return None
        # What the channel takes from the transport options and would change in the message.
        body_encoding = transport_options.get("body_encoding", channel_class.body_encoding)
        steps = transport_options.get("priority_steps", channel_class.priority_steps)
        queue = plan.queue
        if (
            plan.exchange != ""
            or plan.routing_key != queue.name
            or plan.priority
            or channel_class.default_priority
            # Priority 0 is the queue's own list only when it is the first step.
            or list(steps)[:1] != [0]
            or body_encoding != "base64"
            or plan.serializer != "json"
            or plan.compression
            or queue.expires is not None
            or (queue.queue_arguments or {}).get("x-expires") is not None
            or int(plan.headers.get("retries") or 0)
        ):
            return None
        # The console's handler is replaced by the direct records below; any other receiver
        # must see each message, so it gets kombu's path.
        console = (capture.on_before_publish,)
        if not _only_console_receivers(signals.before_task_publish, plan.name, console):
            return None
        if not _only_console_receivers(signals.after_task_publish, plan.name, ()):
            return None
        recording = signals.before_task_publish.has_listeners(plan.name)
        return cls(plan, producer, chunk, recording, total)

    def _template(self, headers: dict[str, Any]) -> tuple[str, Callable[[tuple], tuple]]:
        """The JSON of the envelope as a %-format, and what orders a task's FIELDS for it."""
        plan = self.plan
        nonce = os.urandom(8).hex()
        marks = {field: f"tcbulk{nonce}{field}" for field in self.FIELDS}
        headers = dict(headers)
        headers["id"] = marks["id"]
        headers["root_id"] = plan.root_id or marks["id"]
        headers["argsrepr"] = marks["argsrepr"]
        headers["kwargsrepr"] = marks["kwargsrepr"]
        # Key order as kombu builds it: Producer.publish's properties, then prepare_message's
        # defaults, then basic_publish's additions.
        properties: dict[str, Any] = {
            "correlation_id": marks["id"],
            "reply_to": plan.reply_to,
            "delivery_mode": self.delivery_mode,
        }
        if plan.expiration is not None:
            properties["expiration"] = str(int(plan.expiration * 1000))
        properties["delivery_info"] = {"exchange": "", "routing_key": self.key}
        properties["priority"] = 0
        properties["body_encoding"] = "base64"
        properties["delivery_tag"] = marks["tag"]
        envelope = {
            "body": marks["body"],
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": properties,
        }
        order: list[int] = []

        def placeholder(match: re.Match) -> str:
            field = match.group(1)
            order.append(self.FIELDS.index(field))
            # Ids and base64 need no escaping; arbitrary text is given JSON-encoded.
            return "%s" if field in ("argsrepr", "kwargsrepr") else '"%s"'

        text = re.sub(
            f'"tcbulk{nonce}({"|".join(self.FIELDS)})"',
            placeholder,
            _kombu_encoder.encode(envelope).replace("%", "%%"),
        )
        if set(order) != set(range(len(self.FIELDS))):
            raise RuntimeError("the bulk envelope lost a field")
        return text, itemgetter(*order)

    def publish(self, group: list, task_ids: list[str], published: list[str]) -> None:
        """Build one round, then push the round before it; raises Refused with what is not
        published.

        A round's records are written before its messages are pushed, as the publish signal
        would write them. Where they can be written apart from the caller (not in its
        transaction, not to the buffer, and another round follows), a thread of this call
        writes them while the next round is built: on PostgreSQL the server's share of a COPY
        is as long as the building.
        """
        self.remaining -= len(group)
        try:
            messages, entries = self._messages(group, task_ids)
        except Exception as exc:
            refused = exc if isinstance(exc, Refused) else Refused(len(group), [], exc)
            # The round before is recorded: it goes out first, as it would have without the
            # overlap.
            try:
                self.finish(published)
            except Refused as earlier:
                raise Refused(
                    earlier.count + refused.count,
                    earlier.recorded + refused.recorded,
                    earlier.error,
                ) from earlier.error
            raise refused from refused.error
        saved = self._save(entries)
        previous, self._pending = self._pending, _Round(messages, task_ids, saved, bool(entries))
        if previous is not None:
            self._push(previous, published)

    def finish(self, published: list[str]) -> None:
        """Push the last round, once its records are written."""
        if self._pending is not None:
            self._push(self._pending, published, last=True)

    def abandon(self, published: list[str]) -> list[str]:
        """After an unexpected error: the recorded tasks of the rounds that did not go out."""
        rounds = [r for r in (self._pushing, self._pending) if r is not None and r.recorded]
        self._pushing = self._pending = None
        sent = set(published)
        left: list[str] = []
        for round_ in rounds:
            if round_.saved is not None:
                # Written or not, they are listed: marking a missing record changes nothing.
                round_.saved.exception()
            left += [task_id for task_id in round_.task_ids if task_id not in sent]
        return left

    def close(self) -> None:
        """Wait for the writer thread, which closes its database connections."""
        if self._writer is not None:
            self._writer.submit(connections.close_all)
            self._writer.shutdown(wait=True)
            self._writer = None

    def _save(self, entries: list[dict[str, Any]]) -> Future | None:
        if not entries:
            return None
        # A single round gains nothing from a thread: it would only cost a connection. Once the
        # thread writes, it writes every round it can, the last one too.
        if self.records.writes_apart(entries) and (self._writer is not None or self.remaining > 0):
            if self._writer is None:
                self._writer = ThreadPoolExecutor(1, thread_name_prefix="taskconsole-bulk")
            # With the caller's context: a database router may read it.
            return self._writer.submit(contextvars.copy_context().run, self.records.save, entries)
        self._after_pending()
        self.records.save(entries)
        return None

    def _after_pending(self) -> None:
        """Wait for the round the thread may still be writing, so that what this thread writes
        next follows it (its error, if any, is raised when that round is pushed)."""
        if self._pending is not None and self._pending.saved is not None:
            wait([self._pending.saved])

    def _push(self, round_: _Round, published: list[str], last: bool = False) -> None:
        self._pushing = round_
        if last:
            self._pending = None
        if round_.saved is not None:
            round_.saved.result()
        messages, task_ids, chunk, sent = round_.messages, round_.task_ids, self.chunk, 0
        try:
            with self.producer.channel.conn_or_acquire() as client:
                while sent < len(messages):
                    # One command: the chunk is on the queue whole or not at all, in the
                    # order of single LPUSHes (the first call is the first one taken).
                    client.lpush(self.key, *messages[sent : sent + chunk])
                    published += task_ids[sent : sent + chunk]
                    sent += chunk
        except Exception as exc:
            left = task_ids[sent:]
            recorded = left if round_.recorded else []
            count = len(left)
            # The round after it is recorded too, and will not go out now.
            following, self._pending, self._pushing = self._pending, None, None
            if following is not None:
                if following.saved is not None:
                    following.saved.exception()
                count += len(following.task_ids)
                if following.recorded:
                    recorded = recorded + following.task_ids
            raise Refused(count, recorded, exc) from exc
        self._pushing = None

    def _messages(
        self, group: list, task_ids: list[str]
    ) -> tuple[list[bytes], list[dict[str, Any]]]:
        plan = self.plan
        tags = uuid4s(len(group))
        headers = plan.headers
        entries: list[dict[str, Any]] = []
        recording = self.recording
        if recording:
            records = self.records.round()
            headers = records.stamp(headers)
        template, arrange = self._template(headers)
        argsrepr_max, kwargsrepr_max = plan.argsrepr_max, plan.kwargsrepr_max
        embed = self.embed_json
        strict, tagged = _strict_encoder.encode, _kombu_encoder.encode
        b64encode = base64.b64encode
        messages = []
        try:
            for task_id, tag, (args, kwargs) in zip(task_ids, tags, group, strict=True):
                # The JSON kombu's serializer writes: the plain encoder's for JSON-native
                # values (kombu's own writes the same for them), kombu's (with its tagged
                # dates, UUIDs, Decimals...) for the rest; a value neither can carry raises.
                try:
                    args_json, args_plain = strict(args), True
                except (TypeError, ValueError):
                    args_json, args_plain = tagged(args), False
                kwargs_json, kwargs_plain = "{}", True
                if kwargs:
                    try:
                        kwargs_json = strict(kwargs)
                    except (TypeError, ValueError):
                        kwargs_json, kwargs_plain = tagged(kwargs), False
                # Celery's text form of the arguments.
                argsrepr = text_of(args, argsrepr_max)
                kwargsrepr = text_of(kwargs, kwargsrepr_max)
                if recording:
                    entry = records.entry(
                        task_id,
                        args,
                        kwargs,
                        args_json if args_plain else None,
                        kwargs_json if kwargs_plain else None,
                    )
                    entries.append(entry)
                    if entry["redacted"]:
                        # As the console's publish handler does: what django-celery-results
                        # stores and Flower shows is this text form, so it is redacted too.
                        argsrepr = saferepr(tuple(entry["args"]))
                        kwargsrepr = saferepr(entry["kwargs"])
                body = f"[{args_json}, {kwargs_json}, {embed}]".encode()
                fields = (
                    b64encode(body).decode(),
                    task_id,
                    tag,
                    encode_basestring_ascii(argsrepr),
                    encode_basestring_ascii(kwargsrepr),
                )
                messages.append((template % arrange(fields)).encode())
        except Exception as exc:
            # As with delay(), a task whose arguments cannot be sent was recorded before the
            # attempt: its record and those before it in the round are marked failed.
            if recording:
                self._after_pending()
                failing = task_ids[len(messages)]
                if not entries or entries[-1]["task_id"] != failing:
                    args, kwargs = group[len(messages)]
                    entries.append(records.entry(failing, args, kwargs, None, None))
                self.records.save(entries)
            recorded = [entry["task_id"] for entry in entries]
            raise Refused(len(group), recorded, exc) from exc
        return messages, entries


#: JSON-native values only (TypeError for others): for them, what kombu's encoder writes too.
_strict_encoder = json.JSONEncoder()
#: kombu's JSON serializer's own encoder, with its settings (kombu.utils.json.dumps).
_kombu_encoder = KombuJSONEncoder()


# The console's records, built directly ---------------------------------------------------------


class _RecordPlan:
    """The fields capture.on_before_publish would record, for every task of one call."""

    def __init__(self, plan: Plan) -> None:
        headers = plan.headers
        origin, owner_id, detail = capture.origin_of(headers)
        self.origin, self.owner_id = origin, owner_id
        self.detail = clip_text(detail, 255)
        self.buffered = capture._buffered(origin)
        self.eta = capture._parse_eta(headers.get("eta"))
        self.pattern = secret_pattern()
        self.common = {
            "name": clip_text(str(plan.name), 255),
            "origin": origin,
            "owner_id": owner_id,
            "origin_detail": self.detail,
            "queue": clip_text(plan.routing_key or plan.exchange or "", 255),
            "eta": self.eta,
            "parent_id": headers.get("parent_id") or "",
            "root_id": plan.root_id or "",
            "group_id": headers.get("group") or "",
            "retry_of_id": headers.get(capture.RETRY_OF_HEADER),
        }

    def round(self) -> _RoundRecords:
        return _RoundRecords(self, timezone.now())

    def writes_apart(self, entries: list[dict[str, Any]]) -> bool:
        """Whether another thread may write them: ``save`` would write them itself, outside
        the caller's transaction, to a database server.

        SQLite runs in this process and holds its GIL for most of an insert: a second thread
        made enqueue_many slower there (36-44 against 35 µs per task).
        """
        if self.buffered and len(entries) < buffer.max_size():
            return False
        connection = connections[router.db_for_write(TaskRecord)]
        if connection.vendor == "sqlite" or connection.in_atomic_block:
            return False
        # A caller that turned autocommit off has a transaction open without atomic().
        return connection.get_autocommit()

    def save(self, entries: list[dict[str, Any]]) -> None:
        """Hand records over as the publish handler would: buffered, or written now."""
        if self.buffered and len(entries) < buffer.max_size():
            buffer.add_many(entries)
            return
        try:
            # In a transaction (it commits or rolls back with the caller's writes), inside a
            # task (its children are recorded before they can run), or a round the buffer
            # would write in this thread anyway: written now. Its messages are not pushed
            # yet, so none of these records exists.
            buffer.write(entries, new=True)
        except Exception:
            # Recording never breaks dispatch, as for the publish handler.
            logger.exception("taskconsole could not record %d published tasks", len(entries))


class _RoundRecords:
    def __init__(self, plan: _RecordPlan, now: datetime) -> None:
        self.plan = plan
        self.now = now
        status = TaskStatus.SCHEDULED if plan.eta and plan.eta > now else TaskStatus.QUEUED
        self.common = {**plan.common, "status": status, "created_at": now}
        self.root_id = plan.common["root_id"]
        # The previous task's arguments: equal JSON shares one object, so the bulk INSERT
        # (which prepares a value once per run of the same object) encodes it once.
        self.last_args: tuple[str, Any] = ("", None)
        self.last_kwargs: tuple[str, Any] = ("", None)

    def stamp(self, headers: dict[str, Any]) -> dict[str, Any]:
        """The headers the console's publish handler adds to each message."""
        plan = self.plan
        headers = dict(headers)
        if plan.owner_id is not None:
            headers[capture.OWNER_HEADER] = plan.owner_id
        if plan.buffered:
            headers[capture.RECORD_HEADER] = [str(plan.origin), plan.detail, self.now.timestamp()]
        return headers

    def entry(
        self,
        task_id: str,
        args: tuple,
        kwargs: dict,
        args_json: str | None,
        kwargs_json: str | None,
    ) -> dict[str, Any]:
        """The record of one task; ``*_json`` is the message's JSON when it is plain JSON."""
        # What redact([args, kwargs]) gives (as the publish handler calls it), taken in two
        # parts at the depth they have in that list, so that no kwargs costs nothing.
        pattern = self.plan.pattern
        args, redacted = redact(args, pattern, 1)
        if kwargs:
            kwargs, kwargs_redacted = redact(kwargs, pattern, 1)
            redacted = redacted or kwargs_redacted
        else:
            kwargs = {}
        if not redacted:
            # Unredacted plain JSON is stored as the message carries it, so the same text as
            # the previous task's means the same stored value: that object is reused.
            if args_json is not None:
                if self.last_args[0] == args_json:
                    args = self.last_args[1]
                else:
                    self.last_args = (args_json, args)
            if kwargs_json is not None:
                if self.last_kwargs[0] == kwargs_json:
                    kwargs = self.last_kwargs[1]
                else:
                    self.last_kwargs = (kwargs_json, kwargs)
        return {
            **self.common,
            "task_id": task_id,
            "args": args,
            "kwargs": kwargs,
            "redacted": redacted,
            "root_id": self.root_id or task_id,
        }
