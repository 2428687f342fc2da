from __future__ import annotations

import os
import sys

from django.conf import settings
from django.core.exceptions import (
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.template import loader
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
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

    # Django calls this inside its handling of the exception, which is still the current one;
    # under ASGI too, where asgiref raises it again in the thread that builds the response.
    if is_database_away(sys.exc_info()[1]):
        return database_unavailable(request)
    return django_server_error(request)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler400: why the request was refused, in the reader's language.

    Django refuses a form that sends too many files, fields or bytes before any view sees it;
    its own page says only "Bad Request (400)". The page is rendered from nothing but the
    reason: the request's body is what could not be read.
    """
    if isinstance(exception, TooManyFilesSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
        reason = ngettext(
            "The form sent more than %(count)d file at once. Send fewer files at a time.",
            "The form sent more than %(count)d files at once. Send fewer files at a time.",
            limit,
        ) % {"count": limit}
    elif isinstance(exception, RequestDataTooBig):
        reason = _(
            "The form sent more than %(size)s of text (files not counted), more than this "
            "site takes at once. Shorten it and send it again."
        ) % {"size": filesizeformat(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)}
    elif isinstance(exception, TooManyFieldsSent):
        reason = _("The form sent more fields than this site takes at once.")
    else:
        reason = _("The request could not be read.")
    page = loader.render_to_string("400.html", {"reason": reason})
    return HttpResponseBadRequest(page)
