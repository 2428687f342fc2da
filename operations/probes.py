"""Checks of the running stack: broker, workers, queues, beat. celery_check prints them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from django.utils.translation import gettext as _
from kombu.utils.url import maybe_sanitize_url

from myproject.celery import app as celery_app

from .beat import BEAT_HEARTBEAT
from .models import Heartbeat


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
        replies = celery_app.control.inspect(timeout=timeout).ping() or {}
        # Knowing who answered, the next questions return as soon as each of them replies.
        inspect = celery_app.control.inspect(
            destination=list(replies), limit=len(replies), timeout=timeout
        )
        registered = (inspect.registered() or {}) if replies else {}
        active_queues = (inspect.active_queues() or {}) if replies else {}
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


def check_beat() -> Probe:
    try:
        heartbeat = Heartbeat.objects.filter(name=BEAT_HEARTBEAT).first()
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


def run_all() -> list[Probe]:
    broker = check_broker()
    if not broker.ok:
        # Without a broker, asking workers would only wait for the timeout.
        return [broker, check_beat()]
    return [broker, *check_workers(), check_beat()]
