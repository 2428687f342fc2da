from __future__ import annotations

import os
import sys

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    context = {
        "tutorial_views": settings.TUTORIAL_VIEWS_ENABLED,
        # devstack sets it for the processes it starts; elsewhere Flower's address is unknown.
        "flower_url": os.environ.get("DEVSTACK_FLOWER_URL", ""),
    }
    return render(request, "operations/home.html", context)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: a database that is away gets its 503 page, anything else Django's 500."""
    from django.views.defaults import server_error as django_server_error

    from .middleware import database_unavailable, is_database_away

    # Django calls this inside its handling of the exception, which is still the current one.
    if is_database_away(sys.exc_info()[1]):
        return database_unavailable(request)
    return django_server_error(request)
