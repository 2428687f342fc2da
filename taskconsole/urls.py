from __future__ import annotations

from urllib.parse import quote, unquote

from django.urls import path, register_converter

from . import api, views


class TaskIdConverter:
    """Any task id, "/" included: Celery takes whatever id a publisher gives.

    With `str`, one id holding a "/" made every list that shows it fail (the link to it could
    not be built). The id is quoted into one path segment and read back unquoted.
    """

    regex = "[^/]+"

    def to_python(self, value: str) -> str:
        task_id = unquote(value)
        if "\x00" in task_id:
            # No task has one, and PostgreSQL refuses it in a query: no such page.
            raise ValueError("a task id holds no NUL character")
        return task_id

    def to_url(self, value: str) -> str:
        return quote(str(value), safe="")


register_converter(TaskIdConverter, "task_id")

app_name = "taskconsole"

urlpatterns = [
    path("", views.index, name="index"),
    path("tasks/<task_id:task_id>/", views.detail, name="detail"),
    path("tasks/<task_id:task_id>/cancel/", views.cancel, name="cancel"),
    path("tasks/<task_id:task_id>/retry/", views.retry, name="retry"),
    path("launch/", views.launch_index, name="launch_index"),
    path("launch/<str:name>/", views.launch, name="launch"),
    path("periodic/", views.periodic, name="periodic"),
    path(
        "periodic/<int:pk>/<str:action>/",
        views.periodic_action,
        name="periodic_action",
    ),
    path("workers/", views.workers, name="workers"),
    path("audit/", views.audit, name="audit"),
    # JSON API
    path("api/openapi.json", api.openapi_json, name="api_openapi"),
    path("api/tasks/", api.task_list, name="api_tasks"),
    path("api/tasks/<task_id:task_id>/", api.task_detail, name="api_task"),
    path("api/tasks/<task_id:task_id>/cancel/", api.task_cancel, name="api_cancel"),
    path("api/tasks/<task_id:task_id>/retry/", api.task_retry, name="api_retry"),
    path("api/launchables/", api.launchable_list, name="api_launchables"),
    path("api/launch/", api.launch, name="api_launch"),
    path("api/periodic/", api.periodic_list, name="api_periodic"),
    path("api/periodic/<int:pk>/<str:action>/", api.periodic_action, name="api_periodic_action"),
    path("api/workers/", api.workers, name="api_workers"),
    path("api/audit/", api.audit, name="api_audit"),
]
