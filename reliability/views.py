"""/healthz, /readyz and /metrics: plain words for people, JSON for machines."""

from __future__ import annotations

import secrets
import threading
import time

from django.conf import settings
from django.db import Error as DBError  # any database error, InterfaceError included
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from operations import probes
from taskconsole import permissions
from taskconsole.models import ApiToken

from . import delivery, metrics
from .models import DeadLetter, OutboxMessage, OutboxStatus

READYZ_CACHE_SECONDS = 5

#: (expiry, outcome) of the last readiness checks of this process.
_readiness: tuple[float, list[probes.Probe]] | None = None
_readiness_lock = threading.Lock()


def wants_json(request: HttpRequest) -> bool:
    if request.GET.get("format") == "json":
        return True
    if request.GET.get("format") in {"text", "txt"}:
        return False
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/plain" not in accept.split(",")[0]


def _answer(request: HttpRequest, ok: bool, results: list[probes.Probe]) -> HttpResponse:
    status = 200 if ok else 503
    if wants_json(request):
        return JsonResponse(
            {
                "status": "ok" if ok else "fail",
                "checks": [
                    {"name": p.name, "ok": p.ok, "summary": str(p.summary), "details": p.details}
                    for p in results
                ],
            },
            status=status,
        )
    lines = [_("ready") if ok else _("not ready")] if results else []
    lines += [f"[{'OK' if p.ok else 'FAIL'}] {p.name}: {p.summary}" for p in results]
    return HttpResponse(
        "\n".join(lines or [_("alive")]) + "\n",
        status=status,
        content_type="text/plain; charset=utf-8",
    )


@never_cache
@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """The process is alive and serving requests; nothing else is asked."""
    if wants_json(request):
        return JsonResponse({"status": "ok"})
    return HttpResponse(_("alive") + "\n", content_type="text/plain; charset=utf-8")


@never_cache
@require_GET
def readyz(request: HttpRequest) -> HttpResponse:
    """Database, broker, a worker per queue, beat, queue age: the checks of celery_check.

    The checks broadcast to every worker, so their outcome is kept for a few seconds: a load
    balancer polling every instance cannot turn them into a flood. It is kept in the process,
    not in the shared cache: each instance reports its own database and broker connections (an
    instance that cannot reach the broker must not answer "ready" with another's outcome).
    Anonymous callers learn ready or not ready; worker names, task names and errors are for
    those allowed to see metrics.
    """
    results = readiness()
    ok = all(p.ok for p in results)
    try:
        allowed = _metrics_allowed(request)
    except DBError:
        allowed = False  # the session or the token cannot be read: answer as to anyone
    if not allowed:
        results = [probes.Probe(p.name, p.ok, _("ok") if p.ok else _("failing")) for p in results]
    return _answer(request, ok, results)


def readiness() -> list[probes.Probe]:
    """The readiness checks' outcome, run again once READYZ_CACHE_SECONDS have passed."""
    global _readiness
    with _readiness_lock:  # threads of one process ask the workers once, not each
        now = time.monotonic()
        if _readiness is None or now >= _readiness[0]:
            _readiness = (now + READYZ_CACHE_SECONDS, probes.run_all(worker_timeout=1.0))
        return _readiness[1]


def forget_readiness() -> None:
    global _readiness
    _readiness = None


def _metrics_allowed(request: HttpRequest) -> bool:
    if permissions.can_view(request.user):
        return True
    scheme, _sep, key = request.headers.get("Authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() not in {"bearer", "token"} or not key:
        return False
    expected = settings.RELIABILITY_METRICS_TOKEN
    if expected and secrets.compare_digest(key.encode(), expected.encode()):
        return True
    prefix, _dot, secret = key.partition(".")
    token = ApiToken.objects.select_related("user").filter(prefix=prefix).first()
    return bool(token and secret and token.matches(secret) and permissions.can_view(token.user))


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _metrics_allowed(request):
        response = HttpResponse(
            _("Log in with the console permission or send a bearer token.") + "\n",
            status=401 if not request.user.is_authenticated else 403,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8")


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """Delivery policy of every task, dead letters and the outbox, for console users."""
    if not permissions.can_view(request.user):
        from django.contrib.auth.views import redirect_to_login

        return redirect_to_login(request.get_full_path())
    context = {
        "policies": [
            (name, delivery.DeliveryPolicy.labels[policy], idempotent)
            for name, policy, idempotent in delivery.policies()
        ],
        "dead_letters": DeadLetter.objects.all()[:100],
        "outbox_pending": OutboxMessage.objects.filter(status=OutboxStatus.PENDING).count(),
    }
    return render(request, "reliability/index.html", context)
