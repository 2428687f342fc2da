"""Remember the request's user, so tasks published by any view record who launched them."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from .context import serving


class TaskOwnerMiddleware:
    """Put it after AuthenticationMiddleware. Costs nothing unless a task is published."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with serving(request):
            return self.get_response(request)
