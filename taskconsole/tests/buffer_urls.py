"""A view that publishes with a plain delay(), like any view of the product (test_buffer)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.urls import include, path

from .sample_tasks import echo_task


@login_required
def publish(request: HttpRequest) -> HttpResponse:
    return HttpResponse(echo_task.delay(5).id)


urlpatterns = [
    path("tc-tests/publish/", publish),
    path("", include("myproject.urls")),
]
