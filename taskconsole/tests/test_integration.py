"""The console against a real broker and real workers: lifecycle, progress, cancel, retry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery import chain, group
from celery.result import AsyncResult
from django.utils import timezone
from django_celery_results.models import TaskResult

from app.tasks import add
from operations.testing import wait_for
from taskconsole import actions, queries
from taskconsole.models import LOST, AuditEntry, Origin, TaskRecord, TaskStatus

from .sample_tasks import echo_task, fail_task, flaky_task, sleep_task, spawn_task

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

INCLUDE = ("-I", "taskconsole.tests.sample_tasks")


@pytest.fixture(scope="module")
def worker(start_module_worker):
    return start_module_worker(queues="default", concurrency=2, name="tc", extra_args=INCLUDE)


def record(task_id: str, *statuses: str) -> TaskRecord | None:
    qs = TaskRecord.objects.filter(task_id=task_id)
    if statuses:
        qs = qs.filter(status__in=statuses)
    return qs.first()


def test_lifecycle_of_a_console_launch_with_progress(worker, make_user) -> None:
    user = make_user("view", "launch")
    task_id = actions.launch(user, "tc_tests.progress", {"steps": 4, "delay": 0.4})
    # The record may still be in the publish buffer: the console's read path waits for it.
    queued = queries.get_task(user, task_id)
    assert queued is not None
    assert queued.origin == Origin.CONSOLE
    assert queued.owner == user
    assert queued.kwargs == {"steps": 4, "delay": 0.4}
    assert queued.queue == "default"
    running = wait_for(lambda: record(task_id, TaskStatus.PROGRESS), timeout=60)
    assert running.worker.startswith("tc-")
    assert running.started_at is not None
    done = wait_for(lambda: record(task_id, TaskStatus.SUCCESS), timeout=60)
    assert done.progress_current == done.progress_total == 4
    assert done.progress_percent == 100
    assert done.result == "4"
    assert done.finished_at >= done.started_at >= done.created_at
    assert AuditEntry.objects.filter(action="launch", target=task_id, user=user).exists()


def test_any_code_path_is_recorded_with_eta_and_redacted_secrets(worker) -> None:
    eta = timezone.now() + timedelta(seconds=3)
    result = echo_task.apply_async(kwargs={"value": 7, "api_token": "s3cret"}, eta=eta)
    # Published outside a transaction: the record is written by the publish buffer.
    row = wait_for(lambda: record(result.id), timeout=30)
    assert row.origin == Origin.CODE
    assert row.status == TaskStatus.SCHEDULED
    assert abs((row.eta - eta).total_seconds()) < 1
    assert row.kwargs == {"value": 7, "api_token": "********"}
    assert row.redacted
    done = wait_for(lambda: record(result.id, TaskStatus.SUCCESS), timeout=60)
    assert done.started_at >= eta - timedelta(seconds=1)
    assert done.result == "7"
    # Nor does the secret reach django-celery-results' row (it stores the message's kwargsrepr).
    stored = wait_for(
        lambda: TaskResult.objects.filter(task_id=result.id, status="SUCCESS").first(), timeout=30
    )
    assert "s3cret" not in f"{stored.task_args} {stored.task_kwargs} {stored.result}"
    assert "********" in stored.task_kwargs


def test_failure_keeps_the_traceback_and_retry_links_the_new_task(worker, make_user) -> None:
    user = make_user("view", "launch")
    task_id = actions.launch(user, "tc_tests.fail", {"message": "kaput"})
    failed = wait_for(lambda: record(task_id, TaskStatus.FAILURE), timeout=60)
    assert "ValueError: kaput" in failed.exception
    assert "Traceback" in failed.traceback
    new_id = actions.retry(user, task_id)
    again = queries.get_task(user, new_id)
    assert again.retry_of_id == failed.pk
    assert again.kwargs == {"message": "kaput"}
    wait_for(lambda: record(new_id, TaskStatus.FAILURE), timeout=60)
    assert AuditEntry.objects.filter(action="retry", target=new_id).exists()


def test_celery_retries_are_counted(worker) -> None:
    result = flaky_task.delay(2)
    wait_for(lambda: record(result.id, TaskStatus.RETRY), timeout=60)
    done = wait_for(lambda: record(result.id, TaskStatus.SUCCESS), timeout=60)
    assert done.retries == 2
    assert done.result == "2"
    assert "not yet" in done.exception


def test_chain_group_and_spawned_children_are_linked(worker) -> None:
    result = chain(add.s(1, 2), add.s(3)).apply_async()
    last = wait_for(lambda: record(result.id, TaskStatus.SUCCESS), timeout=60)
    parent = record(last.parent_id)
    assert parent.name == "app.tasks.add"
    assert parent.result == "3"
    assert last.result == "6"
    assert last.origin == Origin.TASK
    assert last.root_id == parent.task_id

    spawned = spawn_task.delay()
    child_id = spawned.get(timeout=60)
    child = wait_for(lambda: record(child_id), timeout=30)
    assert child.parent_id == spawned.id
    assert child.origin == Origin.TASK

    members = group(echo_task.s(i) for i in range(3)).apply_async()
    rows = wait_for(
        lambda: (
            list(TaskRecord.objects.filter(group_id=members.id, status=TaskStatus.SUCCESS))
            if TaskRecord.objects.filter(group_id=members.id, status=TaskStatus.SUCCESS).count()
            == 3
            else None
        ),
        timeout=60,
    )
    assert sorted(r.result for r in rows) == ["0", "1", "2"]


def test_terminate_a_running_task(worker, make_user) -> None:
    user = make_user("view", "launch", "cancel")
    task_id = actions.launch(user, "tc_tests.sleep", {"seconds": 30})
    wait_for(lambda: record(task_id, TaskStatus.STARTED), timeout=60)
    actions.cancel(user, task_id)
    revoked = wait_for(lambda: record(task_id, TaskStatus.REVOKED), timeout=60)
    assert revoked.exception == "Terminated"
    assert revoked.cancel_requested_at is not None


def test_cancel_while_every_worker_is_down_is_durable(start_worker, make_user) -> None:
    # The module's worker consumes `default`, so this test's tasks use a queue of their own.
    first = start_worker(queues="tc_durable", concurrency=1, name="first", extra_args=INCLUDE)
    first.stop()
    user = make_user("view", "cancel")
    result = sleep_task.apply_async(args=[0.1], queue="tc_durable")
    assert wait_for(lambda: record(result.id), timeout=30).status == TaskStatus.QUEUED
    TaskRecord.objects.filter(task_id=result.id).update(owner=user)
    actions.cancel(user, result.id)
    assert record(result.id).status == TaskStatus.REVOKED
    marker = sleep_task.apply_async(args=[0.1], queue="tc_durable")
    late = start_worker(queues="tc_durable", concurrency=1, name="late", extra_args=INCLUDE)
    # The marker was queued after the cancelled task: once it ran, the other was seen.
    wait_for(lambda: record(marker.id, TaskStatus.SUCCESS), timeout=60)
    row = record(result.id)
    assert row.status == TaskStatus.REVOKED
    assert row.started_at is None
    assert f"Discarding revoked task: tc_tests.sleep[{result.id}]" in late.output
    assert f"Task tc_tests.sleep[{result.id}] succeeded" not in late.output


def test_a_cancel_as_the_task_starts_stops_it_where_its_policy_allows(
    start_worker, make_user
) -> None:
    from celery import current_app

    # The worker holds its writes, STARTED among them, for 30 s: the console reads QUEUED while
    # the task already runs, as it does for a moment after any start.
    racer = start_worker(
        queues="tc_race",
        concurrency=1,
        name="racer",
        extra_args=INCLUDE,
        extra_env={"TASKCONSOLE_WORKER_WRITE_INTERVAL": "30"},
    )
    user = make_user("view", "cancel")
    result = sleep_task.apply_async(args=[30], queue="tc_race")

    def running() -> bool:
        active = current_app.control.inspect(timeout=1).active() or {}
        return any(t.get("id") == result.id for tasks in active.values() for t in tasks)

    wait_for(running, timeout=30)
    TaskRecord.objects.filter(task_id=result.id).update(owner=user)
    assert record(result.id).status == TaskStatus.QUEUED
    actions.cancel(user, result.id)
    row = wait_for(lambda: record(result.id, TaskStatus.REVOKED), timeout=30)
    wait_for(lambda: f"Terminating {result.id}" in racer.output, timeout=30)
    racer.stop()
    row.refresh_from_db()
    assert (row.status, row.exception) == (TaskStatus.REVOKED, "Terminated")
    assert f"Task tc_tests.sleep[{result.id}] succeeded" not in racer.output


def test_a_task_its_worker_was_killed_under_fails_when_the_worker_returns(
    start_worker, make_user
) -> None:
    import uuid

    node = ("-n", f"lost-{uuid.uuid4().hex[:6]}@%h")
    first = start_worker(queues="tc_lost", concurrency=1, name="lost", extra_args=INCLUDE + node)
    user = make_user("view", "launch", "cancel")
    result = sleep_task.apply_async(args=[60], queue="tc_lost")
    wait_for(lambda: record(result.id, TaskStatus.STARTED), timeout=60)
    TaskRecord.objects.filter(task_id=result.id).update(owner=user)
    first.discard()  # SIGKILL to the whole group: nothing more is written about the task
    assert record(result.id).status == TaskStatus.STARTED
    again = start_worker(queues="tc_lost", concurrency=1, name="lost", extra_args=INCLUDE + node)
    again.wait_for_output(" ready.", timeout=60)
    row = wait_for(lambda: record(result.id, TaskStatus.FAILURE), timeout=30)
    assert row.exception == "Lost: its worker stopped while it ran, perhaps before it finished"
    assert row.finished_at is not None
    # The result backend says so too (AsyncResult, the admin's task results), not STARTED.
    stored = wait_for(
        lambda: TaskResult.objects.filter(task_id=result.id, status="FAILURE").first(),
        timeout=30,
    )
    assert "WorkerLostError" in stored.result
    assert "Lost: its worker stopped while it ran" in stored.result
    assert AsyncResult(result.id).state == "FAILURE"
    # Now it can be sent again from the console (to its launch queue, which no worker here
    # reads: the record says it waits there).
    new_id = actions.retry(user, result.id)
    assert queries.get_task(user, new_id).retry_of_id == row.pk
    # Not left for a later test's worker on that queue.
    assert actions.cancel(user, new_id).status == TaskStatus.REVOKED


def test_the_sweep_fails_the_task_of_a_worker_that_never_comes_back(start_worker) -> None:
    from taskconsole.tasks import sweep_lost_tasks

    first = start_worker(queues="tc_gone", concurrency=1, name="pod-a", extra_args=INCLUDE)
    result = sleep_task.apply_async(args=[60], queue="tc_gone")
    wait_for(lambda: record(result.id, TaskStatus.STARTED), timeout=60)
    first.discard()  # SIGKILL to the whole group; no worker of its name starts again
    # A replacement under another name (a new container) runs the sweeps beat sends; here a
    # worker silent in two sweeps a second apart is gone (300 s by default).
    second = start_worker(
        queues="tc_sweep",
        concurrency=2,
        name="pod-b",
        extra_args=INCLUDE,
        extra_env={"TASKCONSOLE_LOST_AFTER": "1"},
    )
    mine = sleep_task.apply_async(args=[60], queue="tc_sweep")
    wait_for(lambda: record(mine.id, TaskStatus.STARTED), timeout=60)
    # Both have run for longer than TASKCONSOLE_LOST_AFTER.
    TaskRecord.objects.filter(task_id__in=[result.id, mine.id]).update(
        started_at=timezone.now() - timedelta(hours=1)
    )
    first_sweep = sweep_lost_tasks.apply_async(queue="tc_sweep")
    second.wait_for_output(f"sweep_lost_tasks[{first_sweep.id}] succeeded", timeout=30)
    # The first sweep finds pod-a silent and remembers it; it is gone only in a later one.
    assert record(result.id).status == TaskStatus.STARTED
    sweep_lost_tasks.apply_async(queue="tc_sweep", countdown=5)
    lost = wait_for(lambda: record(result.id, TaskStatus.FAILURE), timeout=60)
    assert lost.exception == LOST
    second.wait_for_output("1 task(s) of gone workers", timeout=30)
    # pod-b answered the pings: the task it is running is not lost.
    assert record(mine.id).status == TaskStatus.STARTED


def test_failed_task_from_code_is_recorded(worker) -> None:
    result = fail_task.delay("plain")
    row = wait_for(lambda: record(result.id, TaskStatus.FAILURE), timeout=60)
    assert row.origin == Origin.CODE
    assert row.owner is None
