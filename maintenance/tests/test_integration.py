"""Each job for real, through a worker consuming `default`, on the test database."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from django_celery_results.models import GroupResult, TaskResult

from maintenance.actions import queue_run
from maintenance.models import Job, MaintenanceRun, RunStatus
from maintenance.tasks import prune_results
from operations.testing import wait_for
from taskconsole.models import Origin, TaskRecord, TaskStatus

from .helpers import (
    cache_keys,
    insert_task_results,
    make_cache_entries,
    make_group_results,
    make_sessions,
    make_user,
    wait_for_run,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

OLD_RESULTS = 300_000


def test_the_page_button_clears_expired_sessions_and_cache_entries(
    client: Client, admin_user, celery_worker
) -> None:
    make_sessions(expired=30, fresh=5)
    make_cache_entries(expired=40, fresh=6)
    client.force_login(admin_user)

    response = client.post("/maintenance/run/clear_expired/")
    assert response.status_code == 302
    run = wait_for_run(MaintenanceRun.objects.get().pk)

    assert run.status == RunStatus.SUCCEEDED, run.summary
    assert run.details.items() >= {"sessions": 30, "cache_entries": 40}.items()
    assert run.deleted_count == 70
    # The admin's own session (force_login) is fresh too and stays.
    assert not Session.objects.filter(session_key__startswith="expired").exists()
    assert Session.objects.filter(session_key__startswith="fresh").count() == 5
    assert {key for key in cache_keys() if "expired-" in key} == set()
    assert {cache.get(f"fresh-{i}") for i in range(6)} == set(range(6))
    assert run.task_id in celery_worker.output
    page = client.get("/maintenance/").content.decode()
    assert "Deleted 30 expired sessions." in page


def test_prune_deletes_a_few_hundred_thousand_old_results_in_batches(
    settings, celery_worker
) -> None:
    old = timezone.now() - timedelta(days=settings.RESULTS_MAX_AGE_DAYS + 1)
    recent = timezone.now() - timedelta(days=settings.RESULTS_MAX_AGE_DAYS - 1)
    insert_task_results("old-", OLD_RESULTS, old)
    insert_task_results("recent-", 25, recent)
    make_group_results("old-", 40, old)
    make_group_results("recent-", 3, recent)

    run = wait_for_run(queue_run(Job.PRUNE_RESULTS).pk, timeout=120)

    assert run.status == RunStatus.SUCCEEDED, run.summary
    assert run.details["task_results"] == OLD_RESULTS
    assert run.details["group_results"] == 40
    assert run.deleted_count == OLD_RESULTS + 40
    assert f"batches of {settings.PRUNE_BATCH_SIZE}" in run.summary
    assert not TaskResult.objects.filter(task_id__startswith="old-").exists()
    assert TaskResult.objects.filter(task_id__startswith="recent-").count() == 25
    assert not GroupResult.objects.filter(group_id__startswith="old-").exists()
    assert GroupResult.objects.filter(group_id__startswith="recent-").count() == 3


def test_a_scheduled_run_records_itself(celery_worker) -> None:
    # What beat sends: the task with no run id.
    result = prune_results.delay()
    outcome = result.get(timeout=60)

    run = MaintenanceRun.objects.get(pk=outcome["run_id"])
    assert outcome["status"] == RunStatus.SUCCEEDED
    assert run.status == RunStatus.SUCCEEDED
    assert run.requested_by is None
    assert run.task_id == result.id
    assert TaskResult.objects.get(task_id=result.id).status == "SUCCESS"


def test_run_now_from_the_task_console_prunes_console_records_too_with_progress(
    client: Client, settings, celery_worker
) -> None:
    days = max(settings.RESULTS_MAX_AGE_DAYS, settings.TASKCONSOLE_MAX_AGE_DAYS) + 1
    insert_task_results("old-", 40, timezone.now() - timedelta(days=days))
    TaskRecord.objects.bulk_create(
        TaskRecord(
            task_id=f"old-record-{n}",
            name="app.tasks.add",
            status=TaskStatus.SUCCESS,
            origin=Origin.CODE,
            created_at=timezone.now() - timedelta(days=days),
        )
        for n in range(3)
    )
    operator = make_user(
        "operator",
        "maintenance.run_maintenance",
        "taskconsole.view_taskrecord",
        "taskconsole.launch_task",
    )
    client.force_login(operator)
    response = client.post(
        "/console/api/launch/",
        json.dumps(
            {"task": "maintenance.tasks.run_job_now", "arguments": {"job": "prune_results"}}
        ),
        content_type="application/json",
    )
    assert response.status_code == 201
    launched_id = response.json()["task_id"]

    def succeeded(task_id: str) -> TaskRecord | None:
        return TaskRecord.objects.filter(task_id=task_id, status=TaskStatus.SUCCESS).first()

    launched = wait_for(lambda: succeeded(launched_id), timeout=60)
    outcome = json.loads(launched.result)
    run = wait_for_run(outcome["run_id"])
    assert run.status == RunStatus.SUCCEEDED, run.summary
    assert run.requested_by == operator
    assert run.details["console_records"] == 3
    assert run.deleted_count == 43
    assert "Deleted 3 finished task console record(s)" in run.summary
    assert not TaskRecord.objects.filter(task_id__startswith="old-record-").exists()

    job = wait_for(lambda: succeeded(run.task_id), timeout=60)
    assert (job.name, job.parent_id, job.owner_id) == (prune_results.name, launched_id, operator.pk)
    assert (job.progress_current, job.progress_total) == (43, 43)
    assert job.progress_message == "43 rows deleted"
    relations = client.get(f"/console/api/tasks/{launched_id}/").json()["relations"]
    assert [r["task_id"] for r in relations["children"]] == [run.task_id]
