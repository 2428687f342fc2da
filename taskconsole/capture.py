"""Record every task from Celery's signals: publish (any code path), receipt, run, outcome.

One INSERT when a task is published and a few UPDATEs by primary-key-like lookups afterwards.
Every handler catches and logs its own errors: recording must never break dispatch or a task.

The publish INSERT is buffered (taskconsole.buffer): a `delay()` from a view, a script or
beat, and the console's own launches (their audit entries go with them, and the task page
that follows waits the few milliseconds the buffer may still hold the row: queries.get_task).
It stays synchronous inside a transaction (so it commits or rolls back with the caller's
writes), inside a running task (chains, groups and spawned children are recorded before they
can run) and when TASKCONSOLE_BUFFER_PUBLISH is False. A buffered publish stamps the
publisher's view of the task on the message (RECORD_HEADER), so a worker that runs the task
before the flush creates the same row itself.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from celery import signals
from celery._state import get_current_task
from celery.utils.saferepr import saferepr
from django.db import (
    IntegrityError,
    close_old_connections,
    connections,
    router,
    transaction,
)
from django.utils import timezone

from . import buffer, conf, context, worker_redaction, writeback
from .dbwait import waiting_for_database
from .models import FINISHED_STATES, RUNNING_STATES, TERMINATED, Origin, TaskRecord, TaskStatus
from .redaction import clip_json, clip_text, redact, redact_result, redact_text
from .signals import announce_cancelled

logger = logging.getLogger(__name__)

OWNER_HEADER = "taskconsole_owner"
RETRY_OF_HEADER = "taskconsole_retry_of"
#: [origin, origin detail, publish time (epoch seconds)] on buffered publishes only.
RECORD_HEADER = "taskconsole_record"
DEFAULT_IGNORED = ("celery.chord_unlock",)
#: How long a task's synchronous STARTED write retries: long enough for a new connection, not
#: long enough to hold a task back for a database that is down (its outcome waits for it).
STARTED_RETRY_SECONDS = 1.0


def _setting(name: str, default: Any) -> Any:
    return conf.setting(name, default)


def _ignored(name: str | None) -> bool:
    return not name or name in _setting("TASKCONSOLE_IGNORED_TASKS", DEFAULT_IGNORED)


def _safe(handler: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            handler(*args, **kwargs)
        except Exception:
            logger.exception("taskconsole could not record %s", handler.__name__)

    return wrapper


def _parse_eta(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        eta = datetime.fromisoformat(value) if isinstance(value, str) else value
    except ValueError:
        return None
    if timezone.is_naive(eta):
        eta = timezone.make_aware(eta, timezone.get_default_timezone())
    return eta


def _args_from_body(body: Any) -> tuple[list, dict]:
    # Protocol 2: (args, kwargs, embed). Protocol 1 kept them in the body dict.
    if isinstance(body, list | tuple) and len(body) >= 2:
        return list(body[0] or ()), dict(body[1] or {})
    if isinstance(body, dict):
        return list(body.get("args") or ()), dict(body.get("kwargs") or {})
    return [], {}


@_safe
def on_before_publish(
    sender: str | None = None,
    body: Any = None,
    exchange: str = "",
    routing_key: str = "",
    headers: dict | None = None,
    declare: list | None = None,
    **_: Any,
) -> None:
    headers = headers if headers is not None else {}
    name = headers.get("task") or sender
    task_id = headers.get("id")
    if _ignored(name) or not task_id:
        return
    args, kwargs = _args_from_body(body)
    (args, kwargs), was_redacted = redact([args, kwargs])
    if was_redacted:
        # The message's own text form of its arguments is what django-celery-results stores
        # as task_args/task_kwargs and what task events (Flower) show: redact it there too.
        headers["argsrepr"] = saferepr(tuple(args))
        headers["kwargsrepr"] = saferepr(kwargs)
    eta = _parse_eta(headers.get("eta"))
    now = timezone.now()
    status = TaskStatus.SCHEDULED if eta and eta > now else TaskStatus.QUEUED
    retries = int(headers.get("retries") or 0)
    if retries:
        # Celery republishes a retried task under the same id: the row exists already. The
        # worker's deferred STARTED of the run that retries is written first, not after.
        writeback.settle(task_id)
        TaskRecord.objects.filter(task_id=task_id).update(
            status=TaskStatus.RETRY, retries=retries, eta=eta, worker=""
        )
        return

    origin, owner_id, detail = origin_of(headers)
    if owner_id is not None:
        # Stamped on the message so the tasks this one starts belong to the same person.
        headers[OWNER_HEADER] = owner_id

    detail = clip_text(detail, 255)
    queue = ""
    for item in declare or ():
        queue = getattr(item, "name", "") or queue
    fields = {
        "task_id": task_id,
        "name": clip_text(str(name), 255),
        "status": status,
        "args": args,
        "kwargs": kwargs,
        "redacted": was_redacted,
        "origin": origin,
        "owner_id": owner_id,
        "origin_detail": detail,
        "queue": clip_text(queue or routing_key or exchange or "", 255),
        "eta": eta,
        "created_at": now,
        "parent_id": headers.get("parent_id") or "",
        "root_id": headers.get("root_id") or "",
        "group_id": headers.get("group") or "",
        "retry_of_id": headers.get(RETRY_OF_HEADER),
    }
    if _buffered(origin):
        headers[RECORD_HEADER] = [str(origin), detail, now.timestamp()]
        # The model instance is built (and the arguments clipped) by the flush, not here.
        buffer.add(fields)
        return
    record = buffer.build_record(fields)
    try:
        # A savepoint when publishing inside a transaction, so a failure cannot poison it.
        with transaction.atomic():
            record.save(force_insert=True)
    except IntegrityError:
        logger.debug("task %s already recorded", task_id)


def origin_of(headers: dict) -> tuple[str, int | None, str]:
    """(origin, owner id, detail) of a task being published, from its launcher and headers."""
    launcher = context.current_launcher()
    periodic_name = headers.get("periodic_task_name")
    if launcher is not None and launcher.origin != Origin.TASK:
        return launcher.origin, launcher.user_id, launcher.detail
    if periodic_name:
        return Origin.BEAT, None, str(periodic_name)
    if launcher is not None:
        return Origin.TASK, launcher.user_id, launcher.detail
    if headers.get("parent_id"):
        return Origin.TASK, None, ""
    return Origin.CODE, None, ""


def watch_beat() -> None:
    """Publishes made by any beat scheduler are Beat's, named after the schedule's entry.

    django-celery-beat stamps its entries' messages with periodic_task_name; Celery's own
    scheduler (CELERY_BEAT_SCHEDULE without the database scheduler) stamps nothing.
    """
    from celery.beat import Scheduler

    apply_entry = Scheduler.apply_entry
    if getattr(apply_entry, "taskconsole_watched", False):
        return

    @functools.wraps(apply_entry)
    def watched(self: Scheduler, entry: Any, *args: Any, **kwargs: Any) -> Any:
        with context.launched_by(context.Launcher(None, Origin.BEAT, str(entry.name))):
            return apply_entry(self, entry, *args, **kwargs)

    watched.taskconsole_watched = True
    Scheduler.apply_entry = watched


def _buffered(origin: str) -> bool:
    """Whether this publish may leave its record to the buffer (see the module docstring)."""
    return origin != Origin.TASK and buffers_here()


def buffers_here() -> bool:
    """Whether a record published here now goes to the buffer rather than straight in.

    Not inside a transaction (the record commits or rolls back with the caller's writes), nor
    inside a running task (what a task starts is recorded before it can run).
    """
    if not buffer.enabled() or get_current_task() is not None:
        return False
    return not transaction.get_connection(router.db_for_write(TaskRecord)).in_atomic_block


def _update(task_id: str | None, *, unless_finished: bool = False, **fields: Any) -> int:
    """Set `fields` on the task's record; returns how many rows changed (0 or 1).

    One plain UPDATE built from the model's columns: it runs twice for every task a worker
    runs, and the ORM's query building cost more than the statement. `unless_finished` leaves
    a finished record alone.
    """
    if not task_id:
        return 0
    connection = connections[router.db_for_write(TaskRecord)]
    sql, params = _update_statement(connection, task_id, unless_finished, fields)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _update_statement(
    connection: Any, task_id: str, unless_finished: bool, fields: dict[str, Any]
) -> tuple[str, list[Any]]:
    opts = TaskRecord._meta
    params = [opts.get_field(name).get_db_prep_save(v, connection) for name, v in fields.items()]
    params.append(task_id)
    if unless_finished:
        params += sorted(FINISHED_STATES)
    return _update_sql(connection.ops.quote_name, tuple(fields), unless_finished), params


@functools.lru_cache(maxsize=64)
def _update_sql(q: Callable[[str], str], names: tuple, unless_finished: bool) -> str:
    opts = TaskRecord._meta
    assignments = ", ".join(f"{q(opts.get_field(name).column)} = %s" for name in names)
    sql = f"UPDATE {q(opts.db_table)} SET {assignments} WHERE {q('task_id')} = %s"
    if unless_finished:
        sql += f" AND {q('status')} NOT IN ({', '.join(['%s'] * len(FINISHED_STATES))})"
    return sql


def _finish(task_id: str | None, request: Any = None, **fields: Any) -> int:
    """_update for a task's outcome, deferred in a worker, retried while the database is away.

    A worker that loses the database just after storing a task's result would otherwise leave
    its record STARTED for good. It waits instead (as the result backend does, see
    reliability.results), backing off, for TASKCONSOLE_FINISH_RETRY_SECONDS at most.
    """
    if task_id and writeback.deferring(request):
        writeback.defer(RECORD_WRITES, task_id, Pending(fields, guard=False))
        return 1
    return waiting_for_database(
        lambda: _update(task_id, **fields),
        seconds=float(_setting("TASKCONSOLE_FINISH_RETRY_SECONDS", 120)),
        model=TaskRecord,
    )


#: The kind of the worker's deferred writes to task records (taskconsole.writeback).
RECORD_WRITES = "taskconsole.record"


@dataclass(frozen=True)
class Pending:
    """A deferred write to one task's record: the fields, and what is needed to create it.

    `guard`: leave a finished record alone (STARTED must never replace an outcome). `name` and
    `request` (the run's request) create the row when the publisher's record is not there yet.
    """

    fields: dict[str, Any]
    guard: bool
    name: str = ""
    request: Any = None


def _merge(earlier: Pending, later: Pending) -> Pending:
    if later.guard and earlier.fields.get("status") in FINISHED_STATES:
        return earlier
    return Pending(
        {**earlier.fields, **later.fields},
        earlier.guard and later.guard,
        later.name or earlier.name,
        later.request or earlier.request,
    )


def _prepare_pending(entries: list[tuple[str, Pending]]) -> dict[str, list[tuple[Any, ...]]]:
    """The batch's UPDATEs, grouped by statement, made before the batch's transaction."""
    connection = connections[router.db_for_write(TaskRecord)]
    by_statement: dict[str, list[tuple[Any, ...]]] = {}
    for task_id, pending in entries:
        sql, params = _update_statement(connection, task_id, pending.guard, pending.fields)
        by_statement.setdefault(sql, []).append((task_id, pending, params))
    return by_statement


def _write_pending(by_statement: dict[str, list[tuple[Any, ...]]]) -> None:
    connection = connections[router.db_for_write(TaskRecord)]
    with connection.cursor() as cursor:
        for sql, group in by_statement.items():
            cursor.executemany(sql, [params for _, _, params in group])
            changed = cursor.rowcount
            if changed == len(group):
                continue
            # Some rows were not changed: finished already (the guard), or not written yet
            # by their publisher's buffer. Those are created from the request. More records
            # than were changed: a buffered INSERT may have committed since (PostgreSQL), so
            # the existing ones are updated once more, which sets the same values where the
            # first UPDATE was applied.
            existing = _existing([task_id for task_id, _, _ in group])
            if changed != len(existing):
                cursor.executemany(
                    sql, [params for task_id, _, params in group if task_id in existing]
                )
            missing = [
                (pending, params)
                for task_id, pending, params in group
                if task_id not in existing and pending.request is not None
            ]
            if missing:
                # Created from their messages, in one INSERT. A row the publisher's buffer
                # inserted meanwhile (PostgreSQL) is left as it is, and the UPDATE, run once
                # more for these, sets the fields on it.
                TaskRecord.objects.bulk_create(
                    [_new_record(p.name, p.request, **p.fields) for p, _ in missing],
                    ignore_conflicts=True,
                )
                cursor.executemany(sql, [params for _, params in missing])


def _existing(task_ids: list[str], chunk: int = 500) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(task_ids), chunk):
        ids = task_ids[start : start + chunk]
        found.update(TaskRecord.objects.filter(task_id__in=ids).values_list("task_id", flat=True))
    return found


def _write_record(task_id: str, pending: Pending) -> None:
    """Set the fields on the task's record, creating it from the request when it is missing."""
    changed = _update(task_id, unless_finished=pending.guard, **pending.fields)
    if changed or pending.request is None:
        return
    if TaskRecord.objects.filter(task_id=task_id).exists():
        # Finished already (the guard), or the publisher's buffered INSERT committed between
        # the two statements (PostgreSQL): the second try tells them apart.
        _update(task_id, unless_finished=pending.guard, **pending.fields)
    else:
        _ensure(pending.name, pending.request, unless_finished=pending.guard, **pending.fields)


writeback.register(RECORD_WRITES, _merge, _write_pending, _prepare_pending)


def _header(request: Any, name: str) -> Any:
    # A task's Context carries the message headers as attributes; a worker Request keeps
    # them in its request_dict.
    value = getattr(request, name, None)
    if value is None:
        value = (getattr(request, "request_dict", None) or {}).get(name)
    return value


def _ensure(task_name: str, request: Any, *, unless_finished: bool = False, **fields: Any) -> None:
    """Create the row from the worker's side when it is missing, with `fields` set on it."""
    record = _new_record(task_name, request, **fields)
    try:
        with transaction.atomic():
            record.save(force_insert=True)
    except IntegrityError:
        # The publisher's flush (or a redelivery) got there first: its row gets the fields,
        # under the same guard (a STARTED never replaces an outcome written meanwhile).
        _update(request.id, unless_finished=unless_finished, **fields)


def _new_record(task_name: str, request: Any, **fields: Any) -> TaskRecord:
    """The record of a task whose row is missing, made from its message, with `fields` set.

    Missing because the publisher's record is still in its buffer (or was rolled back, or the
    task was published by code that does not record). A buffered publish stamped its origin
    and time on the message, so the row is the one the publisher would have written.
    """
    args, kwargs = list(getattr(request, "args", None) or ()), dict(request.kwargs or {})
    (args, kwargs), was_redacted = redact([args, kwargs])
    limit = _setting("TASKCONSOLE_MAX_STORED_ARGS", 10_000)
    origin = Origin.TASK if request.parent_id else Origin.CODE
    detail, created_at = "", timezone.now()
    stamped = _header(request, RECORD_HEADER)
    if isinstance(stamped, list | tuple) and len(stamped) == 3:
        origin = stamped[0] if stamped[0] in Origin.values else origin
        detail = clip_text(str(stamped[1] or ""), 255)
        with contextlib.suppress(TypeError, ValueError, OverflowError):
            created_at = datetime.fromtimestamp(float(stamped[2]), tz=UTC)
    owner_id = _header(request, OWNER_HEADER)
    retry_of_id = _header(request, RETRY_OF_HEADER)
    return TaskRecord(
        task_id=request.id,
        name=clip_text(str(task_name), 255),
        args=clip_json(args, limit),
        kwargs=clip_json(kwargs, limit),
        redacted=was_redacted,
        origin=origin,
        owner_id=owner_id if isinstance(owner_id, int) else None,
        origin_detail=detail,
        eta=_parse_eta(_header(request, "eta")),
        created_at=created_at,
        parent_id=request.parent_id or "",
        root_id=request.root_id or "",
        group_id=request.group or "",
        retry_of_id=retry_of_id if isinstance(retry_of_id, int) else None,
        queue=clip_text((request.delivery_info or {}).get("routing_key") or "", 255),
        **fields,
    )


class CancelledTasks:
    """The ids of tasks cancelled in the console, as the worker's main process knows them.

    Asking the database on every received message would put a query on the path every task
    takes through the worker's main process (its busiest). Instead the set is loaded once
    (cancellations of the last TASKCONSOLE_CANCEL_MEMORY_DAYS days) and topped up with the
    newer ones at most every TASKCONSOLE_CANCEL_REFRESH seconds. A cancellation newer than
    that also reaches running workers as a revoke broadcast; this is for the workers that were
    down when it was made.
    """

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.since: datetime | None = None
        self.checked = 0.0

    def __contains__(self, task_id: str) -> bool:
        self.refresh()
        return task_id in self.ids

    def refresh(self) -> None:
        now = time.monotonic()
        fresh = now - self.checked < _setting("TASKCONSOLE_CANCEL_REFRESH", 2.0)
        if self.since is not None and fresh:
            return
        self.checked = now
        close_old_connections()
        wall = timezone.now()
        if self.since is None:
            days = _setting("TASKCONSOLE_CANCEL_MEMORY_DAYS", 7)
            since = wall - timedelta(days=days)
        else:
            # Overlap the previous look: a row committed late with an earlier timestamp.
            since = self.since - timedelta(seconds=60)
        self.ids.update(
            TaskRecord.objects.filter(cancel_requested_at__gte=since).values_list(
                "task_id", flat=True
            )
        )
        self.since = wall


cancelled = CancelledTasks()


@_safe
def on_task_received(request: Any = None, **_: Any) -> None:
    """Worker main process: refuse a task cancelled in the database, even while we were down."""
    if request is None or _ignored(request.name):
        return
    if request.id in cancelled:
        from celery.worker import state as worker_state

        worker_state.revoked.add(request.id)
        logger.info("taskconsole: task %s was cancelled in the console; discarding it", request.id)


@_safe
def on_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task is None or _ignored(task.name):
        return
    request = task.request
    if getattr(request, "is_eager", False):
        _stamp_eager(request)
    owner_id = getattr(request, OWNER_HEADER, None)
    token = context.set_worker_launcher(context.Launcher(owner_id, Origin.TASK, task.name))
    if task_id:
        _launchers[task_id] = token
    fields = {
        "status": TaskStatus.STARTED,
        "started_at": timezone.now(),
        "worker": clip_text(request.hostname or "", 255),
        "retries": request.retries or 0,
    }
    # A finished record stays finished: a second delivery of the same run (a redelivered
    # message that the task's own claim then drops) must not show it as started again.
    if not task_id:
        return
    pending = Pending(fields, True, task.name, request)
    if writeback.deferring(request):
        writeback.defer(RECORD_WRITES, task_id, pending)
    else:
        # A worker's connection may have broken while it waited for this task: a second try
        # runs on a new one.
        waiting_for_database(
            lambda: _write_record(task_id, pending), seconds=STARTED_RETRY_SECONDS, model=TaskRecord
        )


#: The launcher each running task replaced, put back when it ends (by task id: a task run
#: eagerly inside another nests its pre/postrun inside the other's).
_launchers: dict[str, Any] = {}


def _stamp_eager(request: Any) -> None:
    """What a publish stamps on its message, for a task run where it was called.

    In eager mode (CELERY_TASK_ALWAYS_EAGER, `apply()`) nothing is published, so no record
    says who started the task; its caller is still the current launcher here, in this thread.
    """
    headers = getattr(request, "headers", None) or {}
    origin, owner_id, detail = origin_of(
        {"periodic_task_name": headers.get("periodic_task_name"), "parent_id": request.parent_id}
    )
    setattr(request, RECORD_HEADER, [origin, detail, time.time()])
    if owner_id is not None:
        setattr(request, OWNER_HEADER, owner_id)
    if headers.get(RETRY_OF_HEADER) is not None:
        setattr(request, RETRY_OF_HEADER, headers[RETRY_OF_HEADER])


@_safe
def on_postrun(task_id: str | None = None, **_: Any) -> None:
    token = _launchers.pop(task_id, None) if task_id else None
    if token is not None:
        context.restore_launcher(token)
    else:
        context.set_worker_launcher(None)


@_safe
def on_success(sender: Any = None, result: Any = None, **_: Any) -> None:
    if sender is None or _ignored(sender.name):
        return
    limit = _setting("TASKCONSOLE_MAX_STORED_RESULT", 10_000)
    # Secrets hidden first (the result's strings, its dict keys), then in the text of what
    # JSON cannot hold (its repr).
    result = redact_result(result)
    try:
        text = json.dumps(result, default=_redacted_repr)
    except (TypeError, ValueError):
        text = redact_text(repr(result))
    _finish(
        sender.request.id,
        sender.request,
        status=TaskStatus.SUCCESS,
        result=clip_text(text, limit),
        finished_at=timezone.now(),
    )


@_safe
def on_failure(
    sender: Any = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    einfo: Any = None,
    **_: Any,
) -> None:
    name = getattr(sender, "name", None)
    if _ignored(name):
        return
    limit = _setting("TASKCONSOLE_MAX_STORED_RESULT", 10_000)
    _finish(
        task_id,
        getattr(sender, "request", None),
        status=TaskStatus.FAILURE,
        exception=clip_text(redact_text(f"{type(exception).__name__}: {exception}"), 2000),
        traceback=clip_text(redact_text(str(getattr(einfo, "traceback", "") or "")), limit * 2),
        finished_at=timezone.now(),
    )


@_safe
def on_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    # The republish already set RETRY; a second worker may be running the retry by now,
    # so only the reason is written here, never the status.
    if request is None:
        return
    # The run's deferred writes go first, recorded task or not (its result row too).
    writeback.settle(request.id)
    if _ignored(getattr(sender, "name", None)):
        return
    _update(request.id, exception=clip_text(redact_text(str(reason)), 2000))


@_safe
def on_revoked(
    sender: Any = None,
    request: Any = None,
    terminated: bool = False,
    expired: bool = False,
    **_: Any,
) -> None:
    name = getattr(sender, "name", None)
    if request is None or _ignored(name):
        return
    close_old_connections()
    writeback.settle(request.id)
    # Read before the update: the arguments for the announcement (the worker does not have
    # them at hand here), and whether the console already announced it. A waiting task it
    # cancelled is REVOKED already and was announced then; announcing it again when a worker
    # discards its message, maybe much later, could reach what its app has done since (a
    # notification's failed recipients queued again).
    stored = (
        TaskRecord.objects.filter(task_id=request.id).values_list(
            "name", "args", "kwargs", "status"
        )
    ).first()
    fields: dict[str, Any] = {"status": TaskStatus.REVOKED, "finished_at": timezone.now()}
    if terminated:
        fields["exception"] = TERMINATED
    if not _update(request.id, **fields) and request.id:
        # Revoked (or expired) before its publish record was flushed: the late flush must
        # find the final row, not leave the task QUEUED forever.
        _ensure(name or _header(request, "task"), request, **fields)
    if not request.id or (stored and stored[3] == TaskStatus.REVOKED and not terminated):
        # (Stopped while it ran, it is told again: the console took it for waiting, and an
        # app told "cancelled before it ran" leaves a started object alone.)
        return
    task_name, args, kwargs = stored[:3] if stored else (name or _header(request, "task"), [], {})
    announce_cancelled(
        request.id,
        task_name or "",
        args,
        kwargs,
        terminated=bool(terminated),
        expired=bool(expired),
    )


@_safe
def on_internal_error(
    sender: Any = None, task_id: str | None = None, exception=None, request=None, einfo=None, **_
) -> None:
    if isinstance(request, dict) and request.get("is_eager"):
        # Eager mode with CELERY_TASK_EAGER_PROPAGATES: Celery re-raises the task's own error to
        # the caller and reports it only as an internal error. It is the task's failure.
        on_failure(sender=sender, task_id=task_id, exception=exception, einfo=einfo)
        return
    writeback.settle(task_id)
    _update(
        task_id,
        status=TaskStatus.FAILURE,
        exception=clip_text(redact_text(f"internal error: {exception!r}"), 2000),
        finished_at=timezone.now(),
    )


def _message_request(message: Any, task_id: str) -> Any:
    """A stand-in for the worker Request of a message the worker refused, for _new_record.

    The body is decoded only through kombu's check of the accepted content types (a refused
    pickle body is never loaded; its record then has no arguments).
    """
    headers = message.headers if isinstance(getattr(message, "headers", None), dict) else {}
    try:
        args, kwargs = _args_from_body(message.decode())
    except Exception:
        args, kwargs = [], {}
    return SimpleNamespace(
        id=task_id,
        args=args,
        kwargs=kwargs,
        parent_id=headers.get("parent_id"),
        root_id=headers.get("root_id"),
        group=headers.get("group"),
        delivery_info=getattr(message, "delivery_info", None) or {},
        request_dict=headers,
    )


def _fail_refused(message: Any, task_id: str, name: str, exception: str) -> None:
    """End the record of a task whose message the worker refused: FAILURE, never QUEUED for ever.

    The write path of a task's outcome (deferred in a worker, see writeback), creating the row
    from the message when the publisher's buffer has not written it yet; a finished record is
    left alone.
    """
    request = _message_request(message, task_id)
    fields = {
        "status": TaskStatus.FAILURE,
        "exception": clip_text(redact_text(exception), 2000),
        "finished_at": timezone.now(),
    }
    pending = Pending(fields, True, name, request)
    if writeback.deferring(request):
        writeback.defer(RECORD_WRITES, task_id, pending)
        return
    # A connection the worker's main process kept and the database dropped: a second try
    # runs on a new one.
    waiting_for_database(
        lambda: _write_record(task_id, pending),
        seconds=float(_setting("TASKCONSOLE_FINISH_RETRY_SECONDS", 120)),
        model=TaskRecord,
    )


@_safe
def on_task_unknown(
    message: Any = None, name: str | None = None, id: str | None = None, **_: Any
) -> None:
    """Worker main process: a message for a task this worker does not know (Celery rejects it
    and marks its result FAILURE with NotRegistered)."""
    if message is None or not id or _ignored(name):
        return
    _fail_refused(message, id, str(name), f"NotRegistered({name!r})")


@_safe
def on_task_rejected(message: Any = None, exc: BaseException | None = None, **_: Any) -> None:
    """Worker main process: a task message refused as invalid (a content type that is not
    accepted, such as pickle; a malformed task message)."""
    headers = getattr(message, "headers", None)
    if exc is None or not isinstance(headers, dict):
        return  # not a task message
    task_id, name = headers.get("id"), headers.get("task")
    if not task_id or _ignored(name):
        return
    _fail_refused(message, str(task_id), str(name), f"{type(exc).__name__}: {exc}")


def connect() -> None:
    """Connect the handlers once (AppConfig.ready)."""
    signals.before_task_publish.connect(on_before_publish, weak=False, dispatch_uid="tc_publish")
    signals.task_received.connect(on_task_received, weak=False, dispatch_uid="tc_received")
    signals.task_prerun.connect(on_prerun, weak=False, dispatch_uid="tc_prerun")
    signals.task_postrun.connect(on_postrun, weak=False, dispatch_uid="tc_postrun")
    signals.task_success.connect(on_success, weak=False, dispatch_uid="tc_success")
    signals.task_failure.connect(on_failure, weak=False, dispatch_uid="tc_failure")
    signals.task_retry.connect(on_retry, weak=False, dispatch_uid="tc_retry")
    signals.task_revoked.connect(on_revoked, weak=False, dispatch_uid="tc_revoked")
    signals.task_internal_error.connect(
        on_internal_error, weak=False, dispatch_uid="tc_internal_error"
    )
    signals.task_unknown.connect(on_task_unknown, weak=False, dispatch_uid="tc_unknown")
    signals.task_rejected.connect(on_task_rejected, weak=False, dispatch_uid="tc_rejected")
    writeback.connect()
    # Celery's worker log lines of a task's outcome (its return value, its exception).
    worker_redaction.install()


def _redacted_repr(value: Any) -> str:
    return redact_text(repr(value))


__all__ = ["RUNNING_STATES", "connect"]
