"""The tutorial's views: /test/ with delay, /test/apply_async/, and a result lookup."""

from __future__ import annotations

import uuid
from functools import wraps

from celery.result import AsyncResult
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from .tasks import add

#: The tasks whose results /test/result/ shows to anyone: this app's, as in the tutorial.
TUTORIAL_TASKS = "app.tasks."


def tutorial_view(view):
    """These views start tasks for anyone who opens them, so they exist only when enabled."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not settings.TUTORIAL_VIEWS_ENABLED:
            raise Http404(_("The tutorial's views are turned off (TUTORIAL_VIEWS_ENABLED)."))
        return view(request, *args, **kwargs)

    return require_GET(wrapper)


@tutorial_view
def test_celery(request: HttpRequest) -> HttpResponse:
    add.delay(3, 5)
    return HttpResponse("Celery works")


@tutorial_view
def test_apply_async(request: HttpRequest) -> HttpResponse:
    result = add.apply_async(args=[3, 5])
    return HttpResponse(result.task_id + " : " + result.status)


@tutorial_view
def task_result(request: HttpRequest, task_id: str) -> JsonResponse:
    try:
        # Celery's ids are lower-case with dashes: the same id written otherwise (upper case,
        # no dashes, urn:uuid:) would read as unknown, PENDING.
        task_id = str(uuid.UUID(task_id))
    except ValueError:
        return JsonResponse(
            {"task_id": task_id, "error": _("This is not a task id: task ids are UUIDs.")},
            status=400,
        )
    if not _may_read(request, task_id):
        return JsonResponse(
            {
                "task_id": task_id,
                "error": _(
                    "This page shows the results of the tutorial's tasks (app.tasks) only: "
                    "see other tasks in the task console."
                ),
            },
            status=404,
        )
    result = AsyncResult(task_id)
    status = result.status
    data: dict[str, object] = {"task_id": task_id, "status": status, "ready": result.ready()}
    if status == "SUCCESS":
        data["result"] = result.result
    elif status == "FAILURE":
        exc = result.result
        data["error"] = f"{type(exc).__name__}: {exc}"
    elif status == "PENDING":
        data["detail"] = _(
            "No result is stored for this id yet: the task is still queued, its result is "
            "ignored, or the id is unknown."
        )
    return JsonResponse(data)


def _may_read(request: HttpRequest, task_id: str) -> bool:
    """Anyone may read a tutorial task's result (the page is open to all, like the tutorial's);
    any other task's only whoever the task console lets see it."""
    from django_celery_results.models import TaskResult

    from taskconsole import queries
    from taskconsole.models import TaskRecord

    name = TaskRecord.objects.filter(task_id=task_id).values_list("name", flat=True).first()
    if name is None:
        stored = TaskResult.objects.filter(task_id=task_id).values_list("task_name", flat=True)
        name = stored.first()
    if not name or name.startswith(TUTORIAL_TASKS):
        return True
    return request.user.is_authenticated and queries.get_task(request.user, task_id) is not None
