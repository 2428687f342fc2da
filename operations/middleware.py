from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import Error as DBError  # any database error, InterfaceError included
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _

from .broker_errors import BROKER_ERRORS, unanswered

logger = logging.getLogger(__name__)

#: Seconds a 503 asks the client to wait before trying again.
RETRY_AFTER = "30"


class BrokerUnavailableMiddleware:
    """Answer 503 with a clear page when a view cannot publish because the broker is down."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, BROKER_ERRORS):
            return None
        logger.error("Task broker unavailable while serving %s: %s", request.path, exception)
        try:
            response = TemplateResponse(
                request,
                "operations/broker_unavailable.html",
                {"unanswered": unanswered(exception)},
                status=503,
            )
            response.render()
        except DBError:
            # The page's header reads the user from the database: when that is gone too, a
            # plain answer still says what happened.
            response = HttpResponse(
                _("The task queue is unavailable") + "\n",
                status=503,
                content_type="text/plain; charset=utf-8",
            )
        response["Retry-After"] = RETRY_AFTER
        return response


#: What a database that is away raises: refused or dropped connections, a locked or missing
#: SQLite file. Not IntegrityError or ProgrammingError, which are the code's own faults.
DATABASE_DOWN_ERRORS = (OperationalError, InterfaceError)


def is_database_away(exc: BaseException | None) -> bool:
    # SQLite's "no such table/column" is a database not migrated, which waiting won't fix: it
    # keeps Django's own error page (in DEBUG, the traceback that names the table).
    return isinstance(exc, DATABASE_DOWN_ERRORS) and not str(exc).startswith("no such ")


def database_unavailable(request: HttpRequest | None) -> HttpResponse:
    """A 503 page that needs nothing from the database (no user, no session)."""
    response = HttpResponse(
        render_to_string("operations/database_unavailable.html", request=request),
        status=503,
    )
    response["Retry-After"] = RETRY_AFTER
    return response


class DatabaseUnavailableMiddleware:
    """Answer 503 with a clear page when a view meets a database that is away.

    The views' own errors come here; one raised by another middleware (a session saved on the
    way out) reaches handler500, which answers the same way (operations.views.server_error).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_database_away(exception):
            return None
        logger.error("Database unavailable while serving %s: %s", request.path, exception)
        return database_unavailable(request)
