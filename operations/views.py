from __future__ import annotations

import os

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
