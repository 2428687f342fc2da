"""The JSON API: session auth with CSRF for browsers, ``Authorization: Token <key>`` for scripts."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt

from . import actions, openapi, permissions, queries
from .actions import ActionError
from .models import ApiToken
from .queries import InvalidParameter

logger = logging.getLogger(__name__)

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
#: Seconds a client is asked to wait after a 503, as the site's own 503 page asks.
RETRY_AFTER = "30"
#: The character sets a JSON body may declare: JSON is UTF-8 (RFC 8259), ASCII a part of it.
JSON_CHARSETS = {"utf-8", "utf8", "us-ascii"}


def _token_user(request: HttpRequest):
    header = request.headers.get("Authorization", "")
    scheme, _sep, key = header.partition(" ")
    if scheme.lower() not in {"token", "bearer"} or not key:
        return None, False
    prefix, _dot, secret = key.strip().partition(".")
    token = ApiToken.objects.select_related("user").filter(prefix=prefix).first()
    if token is None or not secret or not token.matches(secret) or not token.user.is_active:
        return None, True
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user, True


def _csrf_failed(request: HttpRequest) -> bool:
    check = CsrfViewMiddleware(lambda req: None)
    check.process_request(request)
    return check.process_view(request, None, (), {}) is not None


def error(status: int, code: str, detail: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail, **extra}, status=status)


def endpoint(methods: set[str]) -> Callable:
    """Authenticate (token or session + CSRF), check the method, turn ActionError into JSON."""

    def decorator(view: Callable) -> Callable:
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
            try:
                response = answer(request, *args, **kwargs)
            except RequestDataTooBig:
                # Past DATA_UPLOAD_MAX_MEMORY_SIZE, reading the body (or the CSRF check's read
                # of a form) raises: Django's own answer would be an HTML page.
                response = _too_large()
            except (OperationalError, InterfaceError) as exc:
                if str(exc).startswith("no such "):
                    # SQLite's "no such table/column": not migrated, which waiting won't fix.
                    raise
                # The database is unreachable (or restarting): a script can wait and try again,
                # which a 500 page would not tell it.
                logger.exception("Task console API: database unavailable")
                response = error(
                    503,
                    "database_unavailable",
                    _("The database does not answer. Try again shortly."),
                )
            if response.status_code == 503:
                # Every 503 (the database's, the broker's) says when to try again.
                response.setdefault("Retry-After", RETRY_AFTER)
            return response

        def answer(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
            if request.method not in methods:
                response = error(405, "method_not_allowed", _("Method not allowed."))
                response["Allow"] = ", ".join(sorted(methods))
                return response
            user, by_token = _token_user(request)
            if by_token and user is None:
                return error(401, "invalid_token", _("The API token is not valid."))
            if user is None:
                user = request.user
            else:
                request.user = user
            # Who asks comes first: a request with neither session nor token is told to log
            # in, whatever else is wrong with it.
            if not user.is_authenticated:
                return error(401, "not_authenticated", _("Log in or send an API token."))
            if not by_token and request.method in UNSAFE and _csrf_failed(request):
                return error(403, "csrf_failed", _("CSRF check failed."))
            if not permissions.can_view(user):
                return error(403, "forbidden", _("You may not use the task console."))
            try:
                return view(request, *args, **kwargs)
            except ActionError as exc:
                return JsonResponse(exc.as_json(), status=exc.status)
            except InvalidParameter as exc:
                return error(400, "invalid_parameter", exc.message, parameter=exc.parameter)

        return wrapper

    return decorator


def _too_large() -> JsonResponse:
    return error(413, "body_too_large", _("The request body is too large."))


def _json_body(request: HttpRequest) -> dict[str, Any]:
    """The request's JSON object: sent as application/json (UTF-8), or refused with a 4xx.

    Any other type is refused, not read as JSON: a form or text/plain body can be sent by
    any page on another site, and its type says it is not what the API reads.
    """
    charset = request.content_params.get("charset", "utf-8").strip().lower()
    if request.content_type != "application/json" or charset not in JSON_CHARSETS:
        raise ActionError(
            415,
            "unsupported_media_type",
            _("Send the request body as JSON in UTF-8, with Content-Type: application/json."),
        )
    body = request.body  # RequestDataTooBig past DATA_UPLOAD_MAX_MEMORY_SIZE: see endpoint()
    if len(body) > actions.max_args_bytes() * 2:
        raise ActionError(413, "body_too_large", _("The request body is too large."))
    if not body:
        return {}
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        # Valid JSON, but Python will not read an integer of more than 4,300 digits.
        if "integer string conversion" in str(exc):
            raise ActionError(
                400, "invalid_json", _("A number in the request body has too many digits.")
            ) from exc
        # RecursionError: arrays or objects nested thousands deep, which no launch form needs.
        raise ActionError(400, "invalid_json", _("The request body is not valid JSON.")) from exc
    if not isinstance(data, dict):
        raise ActionError(400, "invalid_json", _("The request body must be a JSON object."))
    return data


@endpoint({"GET"})
def task_list(request: HttpRequest) -> JsonResponse:
    page = queries.task_page(
        request.user,
        status=request.GET.get("status"),
        name=request.GET.get("name"),
        mine=queries.flag("mine", request.GET.get("mine")),
        cursor=request.GET.get("cursor"),
        limit=request.GET.get("limit"),
    )
    return JsonResponse(
        {
            "results": [queries.serialize_task(r) for r in page.items],
            "next_cursor": page.next_cursor,
        }
    )


@endpoint({"GET"})
def task_detail(request: HttpRequest, task_id: str) -> JsonResponse:
    record = queries.get_task(request.user, task_id)
    if record is None:
        return error(404, "not_found", _("No such task."))
    return JsonResponse(queries.serialize_task_detail(record, request.user))


@endpoint({"POST"})
def task_cancel(request: HttpRequest, task_id: str) -> JsonResponse:
    record = actions.cancel(request.user, task_id)
    return JsonResponse(queries.serialize_task(record, request.user))


@endpoint({"POST"})
def task_retry(request: HttpRequest, task_id: str) -> JsonResponse:
    new_id = actions.retry(request.user, task_id)
    return JsonResponse({"task_id": new_id, "retry_of": task_id}, status=201)


@endpoint({"GET"})
def launchable_list(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {"results": [queries.serialize_launchable(i) for i in queries.launchables(request.user)]}
    )


@endpoint({"POST"})
def launch(request: HttpRequest) -> JsonResponse:
    data = _json_body(request)
    if not isinstance(data.get("task"), str) or not data["task"]:
        raise ActionError(
            400, "invalid_task", _("Name the task to launch: a string in the field task.")
        )
    task_id = actions.launch(request.user, data["task"], data.get("arguments"))
    return JsonResponse({"task_id": task_id}, status=201)


@endpoint({"GET"})
def periodic_list(request: HttpRequest) -> JsonResponse:
    rows = queries.periodic_tasks(get_language())
    return JsonResponse({"results": [queries.serialize_periodic(r) for r in rows]})


@endpoint({"POST"})
def periodic_action(request: HttpRequest, pk: int, action: str) -> JsonResponse:
    if action not in {"enable", "disable", "run"}:
        return error(404, "not_found", _("No such action."))
    if action == "run":
        return JsonResponse({"task_id": actions.run_now(request.user, pk)}, status=201)
    task = actions.set_enabled(request.user, pk, action == "enable")
    return JsonResponse({"id": task.pk, "name": task.name, "enabled": task.enabled})


@endpoint({"GET"})
def workers(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            **queries.workers(request.user),
            **queries.queue_lengths(),
            "throughput": queries.throughput(request.user),
        }
    )


@endpoint({"GET"})
def audit(request: HttpRequest) -> JsonResponse:
    page = queries.audit_page(
        request.user,
        cursor=request.GET.get("cursor"),
        limit=request.GET.get("limit"),
        target=request.GET.get("target", ""),
    )
    return JsonResponse(
        {
            "results": [queries.serialize_audit(e) for e in page.items],
            "next_cursor": page.next_cursor,
        }
    )


@endpoint({"GET"})
def openapi_json(request: HttpRequest) -> JsonResponse:
    # Behind the same login as the rest of the API: it lists the launch list's tasks with their
    # argument schemas and defaults, which are the project's business, not the public's.
    return JsonResponse(openapi.document(request))
