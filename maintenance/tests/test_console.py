"""Maintenance on the task console: run a job now, and the prune of the console's records."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from maintenance import services
from maintenance.models import Job, MaintenanceRun, RunStatus
from maintenance.tasks import run_job_now
from operations.testing import console_launch
from taskconsole.models import AuditEntry, Origin, TaskRecord, TaskStatus

from .helpers import insert_task_results, make_user

pytestmark = pytest.mark.django_db

LAUNCH = "/console/api/launch/"
TASK = "maintenance.tasks.run_job_now"
CONSOLE_PERMS = ("taskconsole.view_taskrecord", "taskconsole.launch_task")


def launch(arguments: dict, *perms: str) -> tuple[int, dict]:
    client = Client()
    client.force_login(make_user("operator", *CONSOLE_PERMS, *perms))
    return console_launch(client, TASK, arguments)


def record(task_id: str, age_days: int, status: str = TaskStatus.SUCCESS) -> TaskRecord:
    return TaskRecord.objects.create(
        task_id=task_id,
        name="app.tasks.add",
        status=status,
        origin=Origin.CODE,
        created_at=timezone.now() - timedelta(days=age_days),
    )


def test_an_operator_launches_a_job_by_name(sent) -> None:
    status, _body = launch({"job": "prune_results"}, "maintenance.run_maintenance")
    assert status == 201
    [message] = sent
    assert message["headers"]["task"] == TASK
    assert message["body"][1] == {"job": "prune_results"}


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({}, "Field required"),
        ({"job": "drop_database"}, "Input should be 'clear_expired', 'backup_database' or"),
        ({"job": 3}, "Input should be"),
    ],
)
def test_bad_arguments_are_refused_and_nothing_is_published(sent, arguments, fragment) -> None:
    status, body = launch(arguments, "maintenance.run_maintenance")
    assert status == 400
    assert body["error"] == "invalid_arguments"
    assert fragment in " ".join(body["errors"]["job"])
    assert sent == []
    assert not TaskRecord.objects.exists()
    assert not AuditEntry.objects.exists()


def test_the_console_permission_alone_is_not_enough(sent) -> None:
    status, body = launch({"job": "clear_expired"}, "maintenance.view_maintenancerun")
    assert status == 400
    assert body["errors"]["__all__"] == ["You may not start maintenance jobs."]
    assert sent == []
    assert not MaintenanceRun.objects.exists()


def test_the_task_queues_a_run_as_the_page_does(sent, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        outcome = run_job_now.apply(args=["clear_expired"]).result
    run = MaintenanceRun.objects.get()
    assert outcome == {"run_id": run.pk, "job": Job.CLEAR_EXPIRED, "task_id": run.task_id}
    assert (run.status, run.requested_by) == (RunStatus.QUEUED, None)
    [message] = sent
    assert (message["headers"]["task"], message["headers"]["id"]) == (
        "maintenance.tasks.clear_expired",
        run.task_id,
    )


@override_settings(PRUNE_BATCH_SIZE=2, RESULTS_MAX_AGE_DAYS=30, TASKCONSOLE_MAX_AGE_DAYS=10)
def test_prune_also_deletes_old_finished_console_records_in_batches() -> None:
    insert_task_results("old-", 3, timezone.now() - timedelta(days=31))
    for n in range(5):
        record(f"old-{n}", age_days=11, status=TaskStatus.SUCCESS if n % 2 else "FAILURE")
    record("old-running", age_days=11, status=TaskStatus.STARTED)
    record("recent", age_days=9)

    outcome = services.prune_results()

    assert set(TaskRecord.objects.values_list("task_id", flat=True)) == {"old-running", "recent"}
    assert outcome.details["console_records"] == 5
    assert outcome.deleted_count == 3 + 5
    assert "Deleted 5 finished task console record(s) older than 10 days." in outcome.summary


def test_a_run_reports_its_progress_where_it_is_told(monkeypatch) -> None:
    def job(progress):
        progress(10)
        progress(20, 30)
        return services.Outcome(summary="done", deleted_count=30)

    monkeypatch.setitem(services.JOBS, Job.PRUNE_RESULTS, job)
    reported: list[tuple[int, int]] = []
    run = services.run_job(Job.PRUNE_RESULTS, report=lambda *p: reported.append(p))
    assert reported == [(10, 0), (20, 30)]
    assert (run.status, run.deleted_count) == (RunStatus.SUCCEEDED, 30)


def test_the_console_form_offers_the_jobs_and_launches_one(sent) -> None:
    client = Client()
    client.force_login(make_user("operator", *CONSOLE_PERMS, "maintenance.run_maintenance"))
    url = f"/console/launch/{TASK}/"
    page = client.get(url).content.decode()
    assert all(f'<option value="{job}"' in page for job in Job.values)
    response = client.post(url, {"job": "clear_expired"})
    assert response.status_code == 302
    [message] = sent
    assert message["body"][1] == {"job": "clear_expired"}


def _revoked_run(args: list) -> TaskRecord:
    """A run_job_now sent by code with positional arguments (as beat and the outbox send them)."""
    return TaskRecord.objects.create(
        task_id=f"revoked-{len(args)}-{args[:1]}",
        name=TASK,
        status=TaskStatus.REVOKED,
        origin=Origin.CODE,
        args=args,
        kwargs={},
    )


def _as(*perms: str) -> Client:
    client = Client()
    # Sees every task (a record sent by code has no owner), may launch; app permissions apart.
    user = make_user("retrier", *CONSOLE_PERMS, "taskconsole.view_all_tasks", *perms)
    client.force_login(user)
    return client


def test_a_retry_of_positional_arguments_asks_the_apps_permission_too(sent) -> None:
    record = _revoked_run(["backup_database"])
    response = _as().post(f"/console/api/tasks/{record.task_id}/retry/")
    assert response.status_code == 400
    assert response.json()["errors"]["__all__"] == ["You may not start maintenance jobs."]
    assert sent == []
    response = _as_allowed().post(f"/console/api/tasks/{record.task_id}/retry/")
    assert response.status_code == 201
    [message] = sent
    # Sent by name, as a launch sends it, once the launch form's schema has checked it.
    args, kwargs = message["body"][:2]
    assert list(args) == []
    assert kwargs == {"job": "backup_database"}


def _as_allowed() -> Client:
    client = Client()
    user = make_user(
        "allowed", *CONSOLE_PERMS, "taskconsole.view_all_tasks", "maintenance.run_maintenance"
    )
    client.force_login(user)
    return client


def test_a_retry_whose_arguments_do_not_fit_the_task_is_refused(sent) -> None:
    record = _revoked_run(["backup_database", "extra"])
    response = _as_allowed().post(f"/console/api/tasks/{record.task_id}/retry/")
    assert response.status_code == 409
    assert response.json()["error"] == "unmatched_arguments"
    assert sent == []


@pytest.mark.parametrize(
    ("task", "args", "status"),
    [
        # The job's own task, as its schedule runs it: not on the launch list.
        ("maintenance.tasks.backup_database", "[]", 403),
        # run_job_now on a schedule: the launch form's checks, as a launch.
        (TASK, '["backup_database"]', 400),
    ],
)
def test_run_now_of_a_maintenance_schedule_asks_the_apps_permission(
    sent, task, args, status
) -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.DAYS)
    periodic = PeriodicTask.objects.create(name="nightly", task=task, interval=every, args=args)
    scheduler = Client()
    scheduler.force_login(make_user("scheduler", *CONSOLE_PERMS, "taskconsole.change_schedule"))
    response = scheduler.post(f"/console/api/periodic/{periodic.pk}/run/")
    assert response.status_code == status
    assert "You may not start maintenance jobs." in response.content.decode()
    assert sent == []
    allowed = Client()
    allowed.force_login(
        make_user(
            "ops", *CONSOLE_PERMS, "taskconsole.change_schedule", "maintenance.run_maintenance"
        )
    )
    assert allowed.post(f"/console/api/periodic/{periodic.pk}/run/").status_code == 201
    [message] = sent
    assert message["headers"]["task"] == task


@pytest.fixture
def without_owner_middleware(settings):
    """A project that left out the console's optional TaskOwnerMiddleware."""
    owner = "taskconsole.middleware.TaskOwnerMiddleware"
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != owner]


def test_the_apps_permission_is_asked_without_the_owner_middleware(
    without_owner_middleware, sent
) -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    status, body = launch({"job": "clear_expired"}, "maintenance.view_maintenancerun")
    assert (status, body["errors"]["__all__"]) == (400, ["You may not start maintenance jobs."])
    page = Client()
    page.force_login(make_user("clicker", *CONSOLE_PERMS))
    response = page.post(f"/console/launch/{TASK}/", {"job": "clear_expired"})
    assert response.status_code == 400
    assert "You may not start maintenance jobs." in response.content.decode()
    record = _revoked_run(["backup_database"])
    response = _as().post(f"/console/api/tasks/{record.task_id}/retry/")
    assert response.json()["errors"]["__all__"] == ["You may not start maintenance jobs."]
    every = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.DAYS)
    periodic = PeriodicTask.objects.create(
        name="nightly", task=TASK, interval=every, args='["backup_database"]'
    )
    scheduler = Client()
    scheduler.force_login(make_user("scheduler", *CONSOLE_PERMS, "taskconsole.change_schedule"))
    response = scheduler.post(f"/console/api/periodic/{periodic.pk}/run/")
    assert response.status_code == 400
    assert "You may not start maintenance jobs." in response.content.decode()
    assert sent == []
    # The same calls by someone who holds the app's permission go through.
    allowed = _as_allowed()
    assert console_launch(allowed, TASK, {"job": "clear_expired"})[0] == 201
    assert allowed.post(f"/console/api/tasks/{record.task_id}/retry/").status_code == 201
