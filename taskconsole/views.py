"""HTML pages. They read through queries.py and act through actions.py, like the API."""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from . import actions, api, forms, permissions, queries, registry
from .actions import ActionError
from .models import TaskStatus

TZ_COOKIE = "taskconsole_tz"
PERIODIC_ACTIONS = {"enable", "disable", "run"}


def viewer_timezone(request: HttpRequest):
    """The browser's zone (a cookie the console's script sets), else the site's."""
    name = request.COOKIES.get(TZ_COOKIE, "")
    try:
        return zoneinfo.ZoneInfo(name) if name else timezone.get_default_timezone()
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return timezone.get_default_timezone()


def console_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @login_required
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not permissions.can_view(request.user):
            raise PermissionDenied(_("You may not use the task console."))
        with timezone.override(viewer_timezone(request)):
            return view(request, *args, **kwargs)

    return wrapper


def _context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    user = request.user
    return {
        "can_launch": permissions.can_launch(user),
        "can_view_all": permissions.can_view_all(user),
        "can_change_schedule": permissions.can_change_schedule(user),
        "viewer_tz": timezone.get_current_timezone_name(),
        **extra,
    }


def _is_fragment(request: HttpRequest) -> bool:
    return request.GET.get("fragment") == "1"


@require_GET
@console_view
def index(request: HttpRequest) -> HttpResponse:
    filters = {
        "status": request.GET.get("status", ""),
        "name": request.GET.get("name", "").strip(),
        "mine": False,
    }
    status = 200
    filter_error = ""
    try:
        filters["mine"] = queries.flag("mine", request.GET.get("mine"))
        page = queries.task_page(
            request.user,
            cursor=request.GET.get("cursor"),
            limit=request.GET.get("limit"),
            **filters,
        )
    except queries.InvalidParameter as exc:
        # A filter that means nothing (a hand-edited or stale link): said above an empty
        # list, not answered with every task as if there were no filter.
        page = queries.Page([], None)
        filter_error = exc.message
        status = 400
    query = {k: v for k, v in {**filters, "mine": "1" if filters["mine"] else ""}.items() if v}
    suggestions = []
    if filters["name"] and not page.items:
        suggestions = [
            {"name": name, "query": urlencode({**query, "name": name})}
            for name in queries.names_like(filters["name"])
        ]
    context = _context(
        request,
        page=page,
        filter_error=filter_error,
        name_suggestions=suggestions,
        filters=filters,
        statuses=TaskStatus.choices,
        # A list refused for its filter has nothing to refresh.
        first_page=not request.GET.get("cursor") and not filter_error,
        live_url="?" + urlencode({**query, "fragment": "1"}),
        next_url=("?" + urlencode({**query, "cursor": page.next_cursor}))
        if page.next_cursor
        else None,
    )
    if _is_fragment(request):
        return render(request, "taskconsole/_rows.html", context, status=status)
    # The name filter's choices: only the page has the filter (its rows refresh without it).
    context["task_names"] = queries.task_names()
    return render(request, "taskconsole/index.html", context, status=status)


@require_GET
@console_view
def detail(request: HttpRequest, task_id: str) -> HttpResponse:
    record = queries.get_task(request.user, task_id)
    if record is None:
        raise Http404(_("No such task."))
    barred = queries.retry_barred_by_redaction(request.user, record)
    context = _context(
        request,
        task=record,
        relations=queries.task_relations(record),
        launchable=registry.get(record.name),
        delivery=queries.delivery_of(record.name),
        can_cancel=queries.can_cancel(request.user, record),
        can_retry=barred is False,
        retry_redacted=bool(barred),
    )
    if _is_fragment(request):
        return render(request, "taskconsole/_detail_panel.html", context)
    return render(request, "taskconsole/detail.html", context)


def _action_error(request: HttpRequest, exc: ActionError) -> None:
    messages.error(request, exc.message)
    # The arguments' own errors (a retry's or a "run now"'s stored arguments), field by field.
    for key, texts in exc.errors.items():
        for text in texts:
            messages.error(request, text if key == "__all__" else f"{key}: {text}")


@require_POST
@console_view
def cancel(request: HttpRequest, task_id: str) -> HttpResponse:
    try:
        actions.cancel(request.user, task_id)
    except ActionError as exc:
        if exc.status == 404:
            raise Http404(exc.message) from exc
        _action_error(request, exc)
    else:
        messages.success(request, _("The task was cancelled."))
    return redirect("taskconsole:detail", task_id=task_id)


@require_POST
@console_view
def retry(request: HttpRequest, task_id: str) -> HttpResponse:
    try:
        new_id = actions.retry(request.user, task_id)
    except ActionError as exc:
        if exc.status == 404:
            raise Http404(exc.message) from exc
        _action_error(request, exc)
        return redirect("taskconsole:detail", task_id=task_id)
    messages.success(request, _("The task was launched again."))
    return redirect("taskconsole:detail", task_id=new_id)


@require_GET
@console_view
def launch_index(request: HttpRequest) -> HttpResponse:
    if not permissions.can_launch(request.user):
        raise PermissionDenied(_("You may not launch tasks."))
    return render(
        request,
        "taskconsole/launch_index.html",
        _context(request, launchables=queries.launchables(request.user)),
    )


@console_view
def launch(request: HttpRequest, name: str) -> HttpResponse:
    if request.method not in {"GET", "POST"}:
        return HttpResponse(status=405, headers={"Allow": "GET, POST"})
    if not permissions.can_launch(request.user):
        raise PermissionDenied(_("You may not launch tasks."))
    launchable = registry.get(name)
    if launchable is None:
        raise Http404(_("This task is not on the launch list."))
    schema = launchable.json_schema()
    values: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    status = 200
    if request.method == "POST":
        arguments, errors = forms.arguments_from_post(schema, request.POST)
        values = {k: request.POST.get(k, "") for k in schema.get("properties", {})}
        if not errors:
            try:
                task_id = actions.launch(request.user, name, arguments)
            except ActionError as exc:
                errors = exc.errors
                messages.error(request, exc.message)
                status = exc.status
            else:
                messages.success(request, _("The task was queued."))
                return redirect("taskconsole:detail", task_id=task_id)
        else:
            status = 400
    fields = forms.schema_fields(schema, values, errors)
    response = render(
        request,
        "taskconsole/launch.html",
        _context(
            request,
            launchable=launchable,
            fields=fields,
            # Errors not tied to one field (the whole object, unknown keys).
            form_errors=[
                f"{key}: {msg}" if key != "__all__" else msg
                for key, msgs in errors.items()
                if key not in {f.name for f in fields}
                for msg in msgs
            ],
        ),
        status=status,
    )
    if status == 503:
        # As the API and the site's other 503 pages say: try again in a while.
        response["Retry-After"] = api.RETRY_AFTER
    return response


@require_GET
@console_view
def periodic(request: HttpRequest) -> HttpResponse:
    rows = queries.periodic_tasks(get_language())
    user = request.user
    may_launch = permissions.can_launch(user)
    for row in rows:
        row["runnable"] = may_launch and registry.runnable_by_hand(row["task"])
    # The admin's edit page: only for those the admin lets in (staff) and lets change it.
    can_edit = user.is_staff and user.has_perm("django_celery_beat.change_periodictask")
    return render(
        request, "taskconsole/periodic.html", _context(request, rows=rows, can_edit=can_edit)
    )


@require_POST
@console_view
def periodic_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    if action not in PERIODIC_ACTIONS:
        raise Http404
    try:
        if action == "run":
            task_id = actions.run_now(request.user, pk)
            messages.success(request, _("The periodic task was queued now."))
            if queries.get_task(request.user, task_id):
                return redirect("taskconsole:detail", task_id=task_id)
        else:
            actions.set_enabled(request.user, pk, action == "enable")
            messages.success(request, _("The periodic task was changed."))
    except ActionError as exc:
        if exc.status == 404:
            raise Http404(exc.message) from exc
        if exc.status == 403:
            raise PermissionDenied(exc.message) from exc
        _action_error(request, exc)
    return redirect(reverse("taskconsole:periodic"))


@require_GET
@console_view
def workers(request: HttpRequest) -> HttpResponse:
    context = _context(request)
    if _is_fragment(request):
        points = queries.throughput(request.user)
        context.update(
            workers=queries.workers(request.user),
            queues=queries.queue_lengths(),
            chart=queries.chart(points),
            total_last_hour=sum(p["count"] for p in points),
        )
        return render(request, "taskconsole/_workers_panel.html", context)
    # The page itself answers at once; its panel (inspect takes up to a second) loads live.
    return render(request, "taskconsole/workers.html", context)


@require_GET
@console_view
def audit(request: HttpRequest) -> HttpResponse:
    status = 200
    filter_error = ""
    try:
        page = queries.audit_page(request.user, cursor=request.GET.get("cursor"))
    except queries.InvalidParameter as exc:
        page = queries.Page([], None)
        filter_error = exc.message
        status = 400
    return render(
        request,
        "taskconsole/audit.html",
        _context(request, page=page, filter_error=filter_error),
        status=status,
    )
