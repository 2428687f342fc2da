"""Remember the request being served, so tasks published by any view record that a web request
(its path, its signed-in user if any) launched them."""

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
