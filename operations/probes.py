"""Checks of the running stack: broker, workers, queues, beat. celery_check prints them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from django.utils.translation import gettext as _
from kombu.utils.url import maybe_sanitize_url

from myproject.celery import app as celery_app

from .beat import BEAT_HEARTBEAT, STOPPED_AT_KEY
from .models import BeatState, Heartbeat


@dataclass(frozen=True)
class Probe:
    """The outcome of one check, in words a person reads."""

    name: str
    ok: bool
    summary: str
    details: list[str] = field(default_factory=list)


def broker_url_for_display() -> str:
    """The broker URL with its password masked."""
    return maybe_sanitize_url(celery_app.conf.broker_url)


def check_broker(timeout: float = 3.0) -> Probe:
    url = broker_url_for_display()
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:
        return Probe(
            "broker",
            False,
            _("The broker at %(url)s does not answer: %(error)s")
            % {
                "url": url,
                "error": exc,
            },
        )
    return Probe("broker", True, _("The broker at %(url)s answers.") % {"url": url})


def configured_queues() -> list[str]:
    return [queue.name for queue in celery_app.conf.task_queues or []] or [
        celery_app.conf.task_default_queue
    ]


def check_workers(timeout: float = 1.5) -> list[Probe]:
    """Which workers answer, what they registered and which queues they consume."""
    try:
        # The first question waits out the timeout (nobody knows how many workers there
        # are); its answers name them, so the second returns as soon as each has replied.
        active_queues = celery_app.control.inspect(timeout=timeout).active_queues() or {}
        replies = sorted(active_queues)
        registered = {}
        if replies:
            second = celery_app.control.inspect(
                destination=replies, limit=len(replies), timeout=timeout
            )
            registered = second.registered() or {}
    except Exception as exc:
        return [Probe("workers", False, _("Could not ask the workers: %(error)s") % {"error": exc})]
    if not replies:
        return [
            Probe(
                "workers",
                False,
                _("No worker answered. Start one with: celery -A myproject worker -l info"),
            )
        ]
    probes = [
        Probe(
            "workers",
            True,
            _("%(count)d worker(s) answered: %(names)s")
            % {"count": len(replies), "names": ", ".join(sorted(replies))},
        )
    ]
    for name in sorted(replies):
        tasks = sorted(registered.get(name, []))
        queues = sorted(q["name"] for q in active_queues.get(name, []))
        probes.append(
            Probe(
                f"worker {name}",
                True,
                _("%(name)s consumes %(queues)s and registered %(count)d task(s)")
                % {"name": name, "queues": ", ".join(queues) or "-", "count": len(tasks)},
                details=tasks,
            )
        )
    consumed = {q["name"] for queues in active_queues.values() for q in queues}
    unconsumed = [q for q in configured_queues() if q not in consumed]
    if unconsumed:
        probes.append(
            Probe(
                "queues",
                False,
                _("No worker consumes these queues, so their tasks wait: %(queues)s")
                % {"queues": ", ".join(unconsumed)},
            )
        )
    else:
        probes.append(
            Probe(
                "queues",
                True,
                _("Every configured queue has a worker: %(queues)s")
                % {"queues": ", ".join(configured_queues())},
            )
        )
    return probes


def _stopped_at() -> datetime | None:
    """When the leading beat last stopped cleanly, if it said so."""
    value = BeatState.objects.filter(key=STOPPED_AT_KEY).values_list("value", flat=True).first()
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def check_beat() -> Probe:
    try:
        heartbeat = Heartbeat.objects.filter(name=BEAT_HEARTBEAT).first()
        stopped = _stopped_at()
    except DatabaseError as exc:
        return Probe(
            "beat", False, _("Could not read beat's heartbeat: %(error)s") % {"error": exc}
        )
    if heartbeat is None:
        return Probe(
            "beat",
            False,
            _("Beat has never run here. Start it with: celery -A myproject beat -l info"),
        )
    age = timezone.now() - heartbeat.beat_at
    seconds = int(age.total_seconds())
    if stopped is not None and stopped >= heartbeat.beat_at:
        return Probe(
            "beat",
            False,
            _("Beat stopped %(seconds)d s ago: it is not running.")
            % {"seconds": int((timezone.now() - stopped).total_seconds())},
        )
    if age > timedelta(seconds=settings.BEAT_STALE_AFTER):
        return Probe(
            "beat",
            False,
            _("Beat's last heartbeat was %(seconds)d s ago: it is not running.")
            % {"seconds": seconds},
        )
    return Probe(
        "beat", True, _("Beat is running (heartbeat %(seconds)d s ago).") % {"seconds": seconds}
    )


def check_database() -> Probe:
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return Probe(
            "database", False, _("The database does not answer: %(error)s") % {"error": exc}
        )
    return Probe("database", True, _("The database answers."))


def oldest_queued_age() -> float | None:
    """Seconds the oldest task still waiting in a queue has waited.

    From the console's records, but a record whose queue the broker says is empty is not
    waiting there: its message was lost (a purge, a broker restarted without its data, a send
    that timed out) and nothing will run it. Counted, it kept readiness failing after any
    broker outage until beat's sweep marked it vanished (taskconsole/vanished.py). A broker
    that cannot say counts as holding the messages.
    """
    from django.db.models import Q

    from taskconsole.models import TaskRecord, TaskStatus
    from taskconsole.vanished import queue_is_empty

    now = timezone.now()
    waiting = TaskRecord.objects.filter(status=TaskStatus.QUEUED).filter(
        Q(eta__isnull=True) | Q(eta__lte=now)
    )
    empty: list[str] = []
    # One connection for the queues asked about (kombu connects on its first use).
    with celery_app.connection_for_read() as broker:
        # Oldest first, leaving out the queues found empty; a few queues at most are asked.
        for _attempt in range(MAX_QUEUES_ASKED):
            oldest = (
                waiting.exclude(queue__in=empty)
                .order_by("created_at")
                .values_list("created_at", "eta", "queue")
                .first()
            )
            if oldest is None:
                return None
            created_at, eta, queue = oldest
            if not queue or not queue_is_empty(queue, broker):
                since = max(t for t in (created_at, eta) if t is not None)
                return max(0.0, (now - since).total_seconds())
            empty.append(queue)
    return None


#: Queues oldest_queued_age asks the broker about, at most, before it gives up looking.
MAX_QUEUES_ASKED = 10


def check_queue_age(limit: float | None = None) -> Probe:
    limit = settings.RELIABILITY_MAX_QUEUE_AGE if limit is None else limit
    try:
        age = oldest_queued_age()
    except DatabaseError as exc:
        return Probe(
            "queue age", False, _("Could not read the queued tasks: %(error)s") % {"error": exc}
        )
    if age is None:
        return Probe("queue age", True, _("No task is waiting in a queue."))
    if age > limit:
        return Probe(
            "queue age",
            False,
            _("The oldest queued task has waited %(seconds)d s (more than %(limit)d s).")
            % {"seconds": age, "limit": limit},
        )
    return Probe(
        "queue age",
        True,
        _("The oldest queued task has waited %(seconds)d s.") % {"seconds": age},
    )


def queue_lengths() -> dict[str, int | None]:
    """Messages waiting in each configured queue (None when the broker cannot say)."""
    lengths: dict[str, int | None] = {}
    with celery_app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=3)
        for name in configured_queues():
            try:
                channel = conn.channel()
                try:
                    lengths[name] = channel.queue_declare(queue=name, passive=True).message_count
                finally:
                    channel.close()
            except Exception:
                # A queue nobody has declared yet (RabbitMQ closes the channel, Redis has no
                # binding) holds nothing.
                lengths[name] = 0
    return lengths


def run_all(worker_timeout: float = 1.5) -> list[Probe]:
    """Every check, for celery_check and /readyz alike."""
    database = check_database()
    queue_age = check_queue_age() if database.ok else None
    tail = [check_beat()] + ([queue_age] if queue_age else [])
    broker = check_broker()
    if not broker.ok:
        # Without a broker, asking workers would only wait for the timeout.
        return [database, broker, *tail]
    return [database, broker, *check_workers(timeout=worker_timeout), *tail]
