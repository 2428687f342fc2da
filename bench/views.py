"""Views that dispatch one task each way and time only the dispatch (item 1).

Mounted by bench.urls in the bench process only. Each view is login_required, like every
view of the product that starts a task, so the user is loaded before the clock starts.
"""

from __future__ import annotations

import time

from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse

from app.tasks import ping
from taskconsole import actions

from . import bare

#: Milliseconds per dispatch, per path; the runner reads and clears it.
timings: dict[str, list[float]] = {}


def _keep(path: str, seconds: float) -> None:
    timings.setdefault(path, []).append(seconds * 1000)


@login_required
def bare_delay(request: HttpRequest) -> HttpResponse:
    t0 = time.perf_counter()
    bare.noop.delay("dispatch")
    _keep("bare", time.perf_counter() - t0)
    return HttpResponse("ok")


@login_required
def product_delay(request: HttpRequest) -> HttpResponse:
    t0 = time.perf_counter()
    ping.delay()
    _keep("delay", time.perf_counter() - t0)
    return HttpResponse("ok")


@login_required
def on_commit(request: HttpRequest) -> HttpResponse:
    # Clocked from the call to the end of the commit hook that publishes, without the
    # commit itself: the view would commit its own writes anyway.
    marks: list[float] = []
    with transaction.atomic():
        transaction.on_commit(lambda: marks.append(time.perf_counter()))
        t0 = time.perf_counter()
        ping.delay_on_commit()
        t1 = time.perf_counter()
        transaction.on_commit(lambda: marks.append(time.perf_counter()))
    # The hooks run in order: the publish happens between the two marks.
    _keep("on_commit", (t1 - t0) + (marks[1] - marks[0]))
    return HttpResponse("ok")


@login_required
def console_launch(request: HttpRequest) -> HttpResponse:
    t0 = time.perf_counter()
    actions.launch(request.user, "app.tasks.add", {"x": 1, "y": 2})
    _keep("console", time.perf_counter() - t0)
    return HttpResponse("ok")
