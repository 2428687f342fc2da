from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import get_language
from django.views.decorators.http import require_GET, require_POST
from django_celery_beat.models import PeriodicTask

from taskconsole.describe import describe_periodic_task

from .actions import queue_run, queued_message, unknown_job_message
from .models import Job, MaintenanceRun
from .schedules import SCHEDULES

RECENT_RUNS = 50


def dashboard(user) -> dict[str, Any]:
    """The page's data: recent runs, the jobs, and each code schedule as beat has it."""
    runs = list(MaintenanceRun.objects.select_related("requested_by")[:RECENT_RUNS])
    tasks = PeriodicTask.objects.select_related("interval", "crontab").in_bulk(
        [schedule.name for schedule in SCHEDULES], field_name="name"
    )
    return {
        "runs": runs,
        "jobs": Job.choices,
        # The schedule in words of the reader's language (the library's own are English).
        "schedules": [
            (schedule, task, describe_periodic_task(task, get_language()) if task else "")
            for schedule in SCHEDULES
            for task in [tasks.get(schedule.name)]
        ],
        "active": any(run.is_active for run in runs),
        "can_run": user.has_perm("maintenance.run_maintenance"),
    }


@require_GET
@login_required
@permission_required("maintenance.view_maintenancerun", raise_exception=True)
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "maintenance/index.html", dashboard(request.user))


@require_POST
@login_required
@permission_required("maintenance.run_maintenance", raise_exception=True)
def run_job(request: HttpRequest, job: str) -> HttpResponse:
    try:
        selected = Job(job)
    except ValueError:
        messages.error(request, unknown_job_message(job))
    else:
        messages.success(request, queued_message(queue_run(selected, request.user)))
    return redirect("maintenance:index")
