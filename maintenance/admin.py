from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.defaultfilters import filesizeformat, truncatechars
from django.urls import path
from django.utils.translation import gettext_lazy

from .actions import queue_run, queued_message, unknown_job_message
from .models import Job, MaintenanceRun

RUN_PERMISSION = "maintenance.run_maintenance"


@admin.register(MaintenanceRun)
class MaintenanceRunAdmin(admin.ModelAdmin):
    """Runs are records of what a job did: read-only, started from the changelist's buttons."""

    list_display = [
        "id",
        "job",
        "status",
        "requested_by",
        "created_at",
        "started_at",
        "finished_at",
        "deleted_count",
        "backup_size_display",
        "short_summary",
    ]
    list_filter = ["job", "status", "created_at"]
    search_fields = ["summary", "task_id", "backup_path"]
    date_hierarchy = "created_at"
    actions = ["run_again"]
    fields = [
        "job",
        "status",
        "requested_by",
        "task_id",
        "created_at",
        "started_at",
        "finished_at",
        # In the reader's language; search matches the stored text, in the worker's.
        "summary_shown",
        "deleted_count",
        "backup_path",
        "backup_size",
        "details",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_run_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(RUN_PERMISSION)

    @admin.display(description=gettext_lazy("backup size"), ordering="backup_size")
    def backup_size_display(self, run: MaintenanceRun) -> str:
        return filesizeformat(run.backup_size) if run.backup_size is not None else "-"

    @admin.display(description=gettext_lazy("summary"))
    def short_summary(self, run: MaintenanceRun) -> str:
        return truncatechars(run.summary_display, 120)

    @admin.display(description=gettext_lazy("summary"))
    def summary_shown(self, run: MaintenanceRun) -> str:
        return run.summary_display

    @admin.action(description=gettext_lazy("Run these jobs again now"), permissions=["run"])
    def run_again(self, request: HttpRequest, queryset: QuerySet[MaintenanceRun]) -> None:
        jobs = sorted(set(queryset.values_list("job", flat=True)))
        for job in jobs:
            run = queue_run(Job(job), request.user)
            self.message_user(request, queued_message(run), messages.SUCCESS)

    def get_urls(self):
        urls = [
            path(
                "run/<str:job>/",
                self.admin_site.admin_view(self.run_view),
                name="maintenance_maintenancerun_run",
            )
        ]
        return urls + super().get_urls()

    def run_view(self, request: HttpRequest, job: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_run_permission(request):
            raise PermissionDenied
        try:
            selected = Job(job)
        except ValueError:
            self.message_user(request, unknown_job_message(job), messages.ERROR)
        else:
            self.message_user(request, queued_message(queue_run(selected, request.user)))
        return redirect("admin:maintenance_maintenancerun_changelist")

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "maintenance_jobs": Job.choices,
            "can_run_maintenance": self.has_run_permission(request),
        }
        return super().changelist_view(request, extra_context)
