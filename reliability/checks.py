"""System checks for settings that lose tasks, run them twice or let strangers in."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.utils.module_loading import autodiscover_modules

from .delivery import is_idempotent

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", ""}


def _is_local(host: str | None) -> bool:
    host = (host or "").strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tasks() -> dict[str, Any]:
    from myproject.celery import app

    # Import every app's tasks.py (Celery's own import hook would run the checks again).
    autodiscover_modules("tasks")
    return {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}


def check_visibility_timeout(conf: Any, tasks: dict[str, Any]) -> list[Warning]:
    if not str(conf.broker_url or "").startswith(("redis", "rediss", "sentinel")):
        return []
    visibility = (conf.broker_transport_options or {}).get("visibility_timeout", 3600)
    longest = {
        "RELIABILITY_MAX_COUNTDOWN": getattr(settings, "RELIABILITY_MAX_COUNTDOWN", 0) or 0,
        "CELERY_TASK_TIME_LIMIT": conf.task_time_limit or 0,
    }
    for name, task in tasks.items():
        if getattr(task, "acks_late", False) and task.time_limit:
            longest[f"{name}.time_limit"] = task.time_limit
    source, seconds = max(longest.items(), key=lambda item: item[1])
    if seconds < visibility:
        return []
    return [
        Warning(
            f"Redis visibility_timeout ({visibility} s) is not longer than {source} "
            f"({seconds} s): a task waiting on a countdown/ETA or running that long is handed "
            "to a second worker and runs twice (kombu#337, celery#4400).",
            hint="Raise CELERY_VISIBILITY_TIMEOUT above the longest countdown, ETA and time "
            "limit, or shorten those.",
            id="reliability.W001",
        )
    ]


def check_acks_late(conf: Any, tasks: dict[str, Any]) -> list[Warning]:
    messages = []
    if conf.task_acks_late:
        messages.append(
            Warning(
                "CELERY_TASK_ACKS_LATE is on, but the app's task class (AtMostOnceTask) "
                "acknowledges early and claims each run, whatever it says: it only reaches "
                "tasks that leave that class (base=celery.Task), which may then run twice "
                "after a worker dies.",
                hint="Leave it off and use base=reliability.delivery.IdempotentTask on the "
                "tasks that are safe to run again.",
                id="reliability.W002",
            )
        )
    for name, task in sorted(tasks.items()):
        if task.acks_late and not is_idempotent(task) and not conf.task_acks_late:
            messages.append(
                Warning(
                    f"Task {name} is acknowledged late but not declared idempotent: it may run "
                    "twice.",
                    hint="Use base=reliability.delivery.IdempotentTask if it is safe to run "
                    "again, or drop acks_late.",
                    obj=name,
                    id="reliability.W003",
                )
            )
    return messages


def check_serializers(conf: Any) -> list[Error]:
    accepted: Iterable[str] = [
        *(conf.accept_content or []),
        *(conf.result_accept_content or []),
        conf.task_serializer or "",
        conf.result_serializer or "",
    ]
    unsafe = sorted({c for c in accepted if "pickle" in c or "yaml" in c})
    if not unsafe:
        return []
    return [
        Error(
            f"Celery accepts {', '.join(unsafe)}: anyone who can write to the broker can run "
            "code on the workers.",
            hint='Set CELERY_ACCEPT_CONTENT = ["application/json"] and JSON serializers.',
            id="reliability.E004",
        )
    ]


def check_broker_exposure(conf: Any) -> list[Warning]:
    parts = urlsplit(str(conf.broker_url or ""))
    if _is_local(parts.hostname) or parts.password:
        return []
    return [
        Warning(
            f"The broker on {parts.hostname} is reached without a password: anyone on the "
            "network can read task arguments and inject messages.",
            hint="Require a password (and TLS: rediss:// or amqps://) on a broker outside "
            "localhost.",
            id="reliability.W005",
        )
    ]


def check_flower_exposure() -> list[Warning]:
    def value(name: str) -> str:
        return str(getattr(settings, name, "") or os.environ.get(name, ""))

    address = value("FLOWER_ADDRESS")
    authenticated = value("FLOWER_BASIC_AUTH") or value("FLOWER_AUTH")
    if not address or _is_local(address) or authenticated:
        return []
    return [
        Warning(
            f"Flower listens on {address} without authentication: it shows every task's "
            "arguments and can revoke tasks and shut workers down.",
            hint="Set FLOWER_BASIC_AUTH (or FLOWER_AUTH with an OAuth provider), or bind "
            "Flower to 127.0.0.1 behind an authenticating proxy.",
            id="reliability.W006",
        )
    ]


def check_time_limits(conf: Any) -> list[Error]:
    soft, hard = conf.task_soft_time_limit, conf.task_time_limit
    if not soft or not hard or soft <= hard:
        return []
    return [
        Error(
            f"CELERY_TASK_SOFT_TIME_LIMIT ({soft} s) is above CELERY_TASK_TIME_LIMIT ({hard} s): "
            'every task sent fails with "soft_time_limit must be less than or equal to '
            'time_limit".',
            hint="Lower CELERY_TASK_SOFT_TIME_LIMIT, or leave it unset: it then defaults to "
            "80% of CELERY_TASK_TIME_LIMIT.",
            id="reliability.E007",
        )
    ]


@register(Tags.compatibility, "celery")
def celery_reliability(app_configs=None, **kwargs) -> list:
    from myproject.celery import app

    conf = app.conf
    tasks = _tasks()
    return [
        *check_visibility_timeout(conf, tasks),
        *check_acks_late(conf, tasks),
        *check_serializers(conf),
        *check_broker_exposure(conf),
        *check_flower_exposure(),
        *check_time_limits(conf),
    ]
