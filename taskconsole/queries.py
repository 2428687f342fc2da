"""The one query layer: the HTML pages and the JSON API both read through these functions."""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.db import router, transaction
from django.db.models import Count, QuerySet
from django.db.models.functions import TruncMinute
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from . import buffer, describe, permissions, registry
from .conf import has_beat, setting
from .models import AuditEntry, Origin, TaskRecord, TaskStatus
from .redaction import redact

logger = logging.getLogger(__name__)

MAX_PAGE = 200
#: How long a task id with no record waits for another process's publish buffer (its
#: interval, 50 ms by default, plus the time a batch takes to write), and how often it looks.
RECORD_WAIT = 0.3
RECORD_POLL = 0.05


@dataclass(frozen=True)
class Page:
    """One page of a keyset-paginated list: no count, a cursor to the next page if any."""

    items: list[Any]
    next_cursor: int | None


def visible_tasks(user):
    """Tasks this user may see: their own, or every task with view_all_tasks."""
    qs = TaskRecord.objects.all()
    if permissions.can_view_all(user):
        return qs
    if not permissions.can_view(user):
        return qs.none()
    return qs.filter(owner_id=user.pk)


#: The largest id a cursor may name: a database's 64-bit integer.
MAX_CURSOR = 2**63 - 1


class InvalidParameter(ValueError):
    """A list's query parameter that means nothing: refused, never silently ignored.

    Ignoring it would answer something else than what was asked (every task for a misspelt
    status, the first page again for a bad cursor, where a paginating script loops for ever).
    """

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message


def _whole(value: Any) -> int | None:
    """The number that ASCII digits say (no sign, space, "_" or point), else None.

    A number of more than 19 digits is said as MAX_CURSOR + 1: big enough for every check
    here (and int() of thousands of digits is refused past 4,300).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    if not (isinstance(value, str) and value.isascii() and value.isdigit()):
        return None
    digits = value.lstrip("0")
    return MAX_CURSOR + 1 if len(digits) > 19 else int(digits or "0")


def _cursor(value: Any) -> int | None:
    """A page's cursor: absent or empty for the first page, else an id (a positive integer)."""
    if value is None or value == "":
        return None
    number = _whole(value)
    if number is None or not 0 < number <= MAX_CURSOR:
        raise InvalidParameter(
            "cursor",
            _(
                "The parameter cursor must be the next_cursor of a previous page "
                "(a positive whole number), not “%(value)s”."
            )
            % {"value": _shown(value)},
        )
    return number


def _limit(value: Any, default: int = 50) -> int:
    """How many rows a page holds: 1 to MAX_PAGE (more is served as MAX_PAGE), 50 if absent."""
    if value is None or value == "":
        return default
    number = _whole(value)
    if number is None or number < 1:
        raise InvalidParameter(
            "limit",
            _(
                "The parameter limit must be a whole number from 1 to %(max)d "
                "(a larger one is taken as %(max)d), not “%(value)s”."
            )
            % {"max": MAX_PAGE, "value": _shown(value)},
        )
    return min(MAX_PAGE, number)


def _status(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if value not in TaskStatus.values:
        raise InvalidParameter(
            "status",
            _("The parameter status must be one of %(allowed)s, not “%(value)s”.")
            % {"allowed": ", ".join(TaskStatus.values), "value": _shown(value)},
        )
    return value


def flag(parameter: str, value: Any) -> bool:
    """A yes-or-no query parameter: 1 or true, 0 or false (or absent, empty: no)."""
    if value is None or value in {"", "0", "false"}:
        return False
    if value in {"1", "true"}:
        return True
    raise InvalidParameter(
        parameter,
        _("The parameter %(parameter)s must be 1, true, 0 or false, not “%(value)s”.")
        % {"parameter": parameter, "value": _shown(value)},
    )


def _text(parameter: str, value: str | None) -> str | None:
    """A text filter; one holding a NUL character names nothing (PostgreSQL refuses it)."""
    if value and "\x00" in value:
        raise InvalidParameter(
            parameter,
            _("The parameter %(parameter)s holds a NUL character, which no name has.")
            % {"parameter": parameter},
        )
    return value


def _shown(value: Any, size: int = 40) -> str:
    text = str(value)
    return text if len(text) <= size else text[: size - 1] + "…"


def task_page(
    user,
    *,
    status: str | None = None,
    name: str | None = None,
    mine: bool = False,
    cursor: Any = None,
    limit: Any = None,
) -> Page:
    """Newest first, keyset on id: each filter has an (x, id) index, so any page is cheap.

    A status, cursor or limit that means nothing raises InvalidParameter.
    """
    status = _status(status)
    name = _text("name", name)
    after = _cursor(cursor)
    size = _limit(limit)
    qs = visible_tasks(user)
    if status:
        qs = qs.filter(status=status)
    if name:
        qs = qs.filter(name=name)
    if mine:
        qs = qs.filter(owner_id=user.pk)
    if after is not None:
        qs = qs.filter(id__lt=after)
    rows = list(qs.select_related("owner").order_by("-id")[: size + 1])
    next_cursor = rows[size - 1].id if len(rows) > size else None
    return Page(rows[:size], next_cursor)


def get_task(user, task_id: str) -> TaskRecord | None:
    """The task's record if this user may see it.

    A task published a moment ago may still have its record in a publish buffer (see
    taskconsole.buffer): this process's is written at once, another process's is waited for,
    TASKCONSOLE_RECORD_WAIT seconds at most. Only an id shaped like the ids Celery gives
    (a UUID) with no record at all waits for another process, and nothing is written or waited
    for inside a transaction.
    """
    visible = visible_tasks(user).select_related("owner", "retry_of").filter(task_id=task_id)
    record = visible.first()
    if record is not None or not buffer.enabled():
        return record
    if transaction.get_connection(router.db_for_read(TaskRecord)).in_atomic_block:
        # Writing the buffer here would put other requests' rows in the caller's transaction,
        # and another process's commit may not show inside one (SQLite reads from the
        # snapshot its first read took).
        return None
    buffer.settle(task_id)
    record = visible.first()
    if record is not None or not _celery_id(task_id):
        return record
    exists = TaskRecord.objects.filter(task_id=task_id)
    deadline = time.monotonic() + float(setting("TASKCONSOLE_RECORD_WAIT", RECORD_WAIT))
    while not exists.exists():
        if time.monotonic() >= deadline:
            return None
        time.sleep(RECORD_POLL)
    return visible.first()


def _celery_id(task_id: Any) -> bool:
    try:
        uuid.UUID(str(task_id))
    except ValueError:
        return False
    return True


def delivery_of(name: str) -> str:
    """How the task is acknowledged, in words: TASKCONSOLE_DELIVERY_POLICY (a dotted path to a
    callable taking the task's name) when the project describes it, else Celery's own flags."""
    from django.conf import settings
    from django.utils.module_loading import import_string

    project_policy = getattr(settings, "TASKCONSOLE_DELIVERY_POLICY", None)
    if project_policy:
        return str(import_string(project_policy)(name))
    task = current_app.tasks.get(name)
    if task is None:
        # A web process imports the apps' tasks.py only when something asks.
        from django.utils.module_loading import autodiscover_modules

        autodiscover_modules("tasks")
        task = current_app.tasks.get(name)
    if task is None:
        return ""
    if not task.acks_late:
        return _("Acknowledged on receipt (early ack)")
    if task.reject_on_worker_lost:
        return _("Acknowledged after it runs; requeued if its worker dies")
    return _("Acknowledged after it runs")


# `<> ''` as the partial indexes tc_parent_only and tc_group_only say it: a database uses an
# index whose condition the query repeats.
def children(record: TaskRecord) -> QuerySet[TaskRecord]:
    """The tasks this one started (a chain's next link, tasks its body sent)."""
    return TaskRecord.objects.filter(parent_id=record.task_id).exclude(parent_id="").order_by("id")


def group_members(record: TaskRecord) -> QuerySet[TaskRecord]:
    """The tasks of this task's group, itself included."""
    return TaskRecord.objects.filter(group_id=record.group_id).exclude(group_id="").order_by("id")


def task_relations(record: TaskRecord, limit: int = 50) -> dict[str, list[TaskRecord]]:
    """Parent, children (chains, tasks it started), group siblings and retries of one task."""
    relations: dict[str, list[TaskRecord]] = {"parent": [], "children": [], "group": []}
    if record.parent_id:
        relations["parent"] = list(TaskRecord.objects.filter(task_id=record.parent_id)[:1])
    relations["children"] = list(children(record)[:limit])
    if record.group_id:
        relations["group"] = list(group_members(record).exclude(pk=record.pk)[:limit])
    relations["retried_as"] = list(record.retried_as.order_by("id")[:limit])
    return relations


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def serialize_task(record: TaskRecord, user=None) -> dict[str, Any]:
    launchable = registry.get(record.name)
    data = {
        "id": record.id,
        "task_id": record.task_id,
        "name": record.name,
        "label": str(launchable.label) if launchable else record.name,
        "status": record.status,
        "status_display": str(record.get_status_display()),
        "args": record.args,
        "kwargs": record.kwargs,
        "redacted": record.redacted,
        "origin": record.origin,
        "origin_display": str(record.get_origin_display()),
        "origin_detail": record.origin_detail,
        "owner": record.owner.get_username() if record.owner_id and record.owner else None,
        "queue": record.queue,
        "worker": record.worker,
        "eta": _iso(record.eta),
        "created_at": _iso(record.created_at),
        "started_at": _iso(record.started_at),
        "finished_at": _iso(record.finished_at),
        "runtime": record.runtime,
        "retries": record.retries,
        "result": record.result,
        "exception": record.exception,
        "parent_id": record.parent_id or None,
        "root_id": record.root_id or None,
        "group_id": record.group_id or None,
        "retry_of": record.retry_of.task_id if record.retry_of_id and record.retry_of else None,
        "progress": {
            "current": record.progress_current,
            "total": record.progress_total,
            "message": record.progress_message,
            "percent": record.progress_percent,
        },
        "cancel_requested_at": _iso(record.cancel_requested_at),
    }
    if user is not None:
        data["can_cancel"] = can_cancel(user, record)
        data["can_retry"] = can_retry(user, record)
    return data


def serialize_task_detail(record: TaskRecord, user) -> dict[str, Any]:
    data = serialize_task(record, user)
    data["traceback"] = record.traceback
    relations = task_relations(record)
    data["relations"] = {
        key: [{"task_id": r.task_id, "name": r.name, "status": r.status} for r in rows]
        for key, rows in relations.items()
    }
    return data


def can_cancel(user, record: TaskRecord) -> bool:
    from .models import RUNNING_STATES, WAITING_STATES

    if not permissions.can_cancel(user) or record.cancel_requested_at:
        return False
    if record.status in WAITING_STATES:
        return True
    launchable = registry.get(record.name)
    return record.status in RUNNING_STATES and bool(launchable and launchable.can_terminate)


def can_retry(user, record: TaskRecord) -> bool:
    return retry_barred_by_redaction(user, record) is False


def retry_barred_by_redaction(user, record: TaskRecord) -> bool | None:
    """None when a retry is not on offer anyway; else whether redaction alone bars it.

    A redacted argument (a password, a token) was never stored, so the task cannot be sent
    again as it was: the page says so, and that its launch form can start it afresh.
    """
    if not (
        permissions.can_launch(user)
        and record.status in {TaskStatus.FAILURE, TaskStatus.REVOKED}
        and registry.get(record.name) is not None
    ):
        return None
    return record.redacted


# Launch list -------------------------------------------------------------------------------


def launchables(user) -> list[registry.Launchable]:
    return registry.all_launchables() if permissions.can_launch(user) else []


def serialize_launchable(item: registry.Launchable) -> dict[str, Any]:
    return {
        "name": item.name,
        "label": str(item.label),
        "description": str(item.description),
        "cancel_policy": item.cancel_policy,
        "schema": item.json_schema(),
    }


# Audit -------------------------------------------------------------------------------------


def audit_page(user, *, cursor: Any = None, limit: Any = None, target: str = "") -> Page:
    """Newest first, as task_page; a cursor or limit that means nothing raises InvalidParameter."""
    after = _cursor(cursor)
    size = _limit(limit)
    qs = AuditEntry.objects.select_related("user")
    if not permissions.can_view_all(user):
        qs = qs.filter(user_id=user.pk)
    if _text("target", target):
        qs = qs.filter(target=target)
    if after is not None:
        qs = qs.filter(id__lt=after)
    rows = list(qs.order_by("-id")[: size + 1])
    return Page(rows[:size], rows[size - 1].id if len(rows) > size else None)


def serialize_audit(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": _iso(entry.at),
        "user": entry.user.get_username() if entry.user_id and entry.user else None,
        "action": entry.action,
        "action_display": str(entry.get_action_display()),
        "target": entry.target,
        "details": entry.details,
    }


# Periodic tasks ----------------------------------------------------------------------------


def periodic_tasks(language: str | None, now: datetime | None = None) -> list[dict[str, Any]]:
    if not has_beat():
        return []
    from django_celery_beat.models import PeriodicTask

    now = now or timezone.now()
    rows = []
    for task in PeriodicTask.objects.select_related(
        "interval", "crontab", "solar", "clocked"
    ).order_by("name"):
        rows.append(periodic_task_info(task, language, now))
    return rows


def _next_runs(task, now: datetime) -> list[datetime]:
    """No run times for a row Celery cannot compute (an hour of -1, an interval past 9999,
    made outside the admin's checks): the page shows the rest instead of failing."""
    try:
        return describe.next_runs(task, now)
    except Exception as exc:
        logger.warning("Periodic task %s: its next runs cannot be computed: %r", task.pk, exc)
        return []


def periodic_task_info(task, language: str | None, now: datetime) -> dict[str, Any]:
    last = (
        # Its runs by beat and by "run now" are named after it; a web request's path is not.
        TaskRecord.objects.filter(origin_detail=task.name, origin__in=(Origin.BEAT, Origin.CONSOLE))
        .only("task_id", "status", "created_at", "finished_at")
        .order_by("-id")
        .first()
    )
    try:
        admin_url = reverse("admin:django_celery_beat_periodictask_change", args=[task.pk])
    except NoReverseMatch:
        admin_url = None
    return {
        "id": task.pk,
        "name": task.name,
        "task": task.task,
        "enabled": task.enabled,
        "one_off": task.one_off,
        "description": describe.describe_periodic_task(task, language),
        "description_en": describe.describe_periodic_task(task, "en"),
        "description_zh": describe.describe_periodic_task(task, "zh-hans"),
        "next_runs": _next_runs(task, now),
        "last_run_at": task.last_run_at,
        "total_run_count": task.total_run_count,
        "last_task": last,
        "args": task.args,
        "kwargs": task.kwargs,
        "queue": task.queue,
        "admin_url": admin_url,
    }


def serialize_periodic(info: dict[str, Any]) -> dict[str, Any]:
    last = info["last_task"]
    data = {k: v for k, v in info.items() if k not in {"last_task", "next_runs", "last_run_at"}}
    data["next_runs"] = [timezone.localtime(t).isoformat() for t in info["next_runs"]]
    data["last_run_at"] = _iso(info["last_run_at"])
    data["last_task"] = (
        {"task_id": last.task_id, "status": last.status, "created_at": _iso(last.created_at)}
        if last
        else None
    )
    # Redacted as task records are: a schedule's arguments may hold a password or an API key.
    (data["args"], data["kwargs"]), data["redacted"] = redact(
        [_loads(info["args"], []), _loads(info["kwargs"], {})]
    )
    return data


def _loads(text: str, default: Any) -> Any:
    try:
        return json.loads(text or "null") or default
    except ValueError:
        return default


# Workers and queues ------------------------------------------------------------------------


def workers(user, timeout: float = 1.0) -> dict[str, Any]:
    """Online workers with pool, concurrency and active tasks; errors are reported, not raised.

    Of the active tasks, `user` sees those the task list shows them; the others are counted.
    """
    try:
        control = current_app.control
        replies = control.inspect(timeout=timeout).ping() or {}
        names = sorted(replies)
        stats: dict[str, Any] = {}
        active: dict[str, Any] = {}
        if names:
            # Knowing who answered, each question returns as soon as all of them have.
            inspect = control.inspect(destination=names, limit=len(names), timeout=timeout)
            stats = inspect.stats() or {}
            active = inspect.active() or {}
    except Exception as exc:
        logger.warning("Could not inspect workers: %s", exc)
        return {"error": str(exc), "workers": []}
    running = [t for name in names for t in (active.get(name) or [])]
    shown = _visible_ids(user, [t.get("id") for t in running])
    rows = []
    for name in names:
        info = stats.get(name) or {}
        pool = info.get("pool") or {}
        tasks = active.get(name) or []
        rows.append(
            {
                "name": name,
                "pool": pool.get("implementation", ""),
                "concurrency": pool.get("max-concurrency"),
                "processed": sum((info.get("total") or {}).values()),
                "active": [
                    {"task_id": t.get("id"), "name": t.get("name")}
                    for t in tasks
                    if t.get("id") in shown
                ],
                "active_hidden": sum(1 for t in tasks if t.get("id") not in shown),
            }
        )
    return {"error": None, "workers": rows}


def _visible_ids(user, task_ids: list[Any]) -> set[Any]:
    if permissions.can_view_all(user):
        return set(task_ids)
    ids = [i for i in task_ids if isinstance(i, str)]
    return set(visible_tasks(user).filter(task_id__in=ids).values_list("task_id", flat=True))


def task_names() -> list[str]:
    """The names of the tasks this process knows (Celery's own apart), for the name filter."""
    return sorted(name for name in current_app.tasks if not name.startswith("celery."))


def names_like(text: str, limit: int = 5) -> list[str]:
    """Known task names that contain `text` (any case), for a name filter that found nothing."""
    wanted = text.casefold()
    return [name for name in task_names() if wanted in name.casefold() and name != text][:limit]


def queue_names() -> list[str]:
    """The queues this process can tell tasks go to: task_queues, the default queue, the
    queues task_routes name (a routing function's answers cannot be known) and the tasks' own.
    """
    conf = current_app.conf
    names = [q.name for q in (conf.task_queues or [])]
    names.append(conf.task_default_queue)
    routes = conf.task_routes or ()
    for table in routes if isinstance(routes, list | tuple) else [routes]:
        if not isinstance(table, dict):
            continue
        for route in table.values():
            queue = route.get("queue") if isinstance(route, dict) else route
            names.append(getattr(queue, "name", queue))
    names.extend(getattr(task, "queue", None) for task in current_app.tasks.values())
    return list(dict.fromkeys(name for name in names if name and isinstance(name, str)))


def queue_lengths() -> dict[str, Any]:
    names = queue_names()
    lengths: dict[str, int | None] = {}
    error = None
    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            channel = conn.default_channel
            for name in names:
                try:
                    lengths[name] = channel.queue_declare(queue=name, passive=True).message_count
                except Exception:
                    # Redis drops an empty list, so a missing queue is an empty one.
                    lengths[name] = 0
                    channel = conn.channel()
    except Exception as exc:
        error = str(exc)
    return {"error": error, "queues": [{"name": n, "length": lengths.get(n)} for n in names]}


def throughput(user, now: datetime | None = None, minutes: int = 60) -> list[dict[str, Any]]:
    """Tasks finished per minute over the last hour (the finished_at index keeps it cheap)."""
    now = (now or timezone.now()).replace(second=0, microsecond=0)
    since = now - timedelta(minutes=minutes - 1)
    qs = visible_tasks(user).filter(finished_at__gte=since)
    counts = {
        row["minute"]: row["n"]
        for row in qs.annotate(minute=TruncMinute("finished_at"))
        .values("minute")
        .annotate(n=Count("id"))
        .order_by()
    }
    by_minute = {
        timezone.localtime(k).replace(second=0, microsecond=0): v for k, v in counts.items()
    }
    out = []
    for i in range(minutes):
        minute = timezone.localtime(since + timedelta(minutes=i))
        out.append({"minute": minute.isoformat(), "count": by_minute.get(minute, 0)})
    return out


def chart(points: list[dict[str, Any]], width: int = 600, height: int = 80) -> dict[str, Any]:
    """Bar geometry for the inline SVG chart."""
    peak = max((p["count"] for p in points), default=0) or 1
    bar = width / max(len(points), 1)
    bars = []
    for i, point in enumerate(points):
        h = round(point["count"] * (height - 10) / peak, 1)
        bars.append(
            {
                "x": round(i * bar, 1),
                "y": round(height - h, 1),
                "w": round(max(bar - 1, 1), 1),
                "h": h,
                "count": point["count"],
                "minute": point["minute"][11:16],
            }
        )
    return {"bars": bars, "peak": peak, "width": width, "height": height}
