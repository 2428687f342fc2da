"""The tutorial, end to end: a real broker and real worker subprocesses."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from amqp.exceptions import ChannelError
from celery.result import AsyncResult
from django.test import Client
from django_celery_results.models import TaskResult

from app.models import Event
from app.tasks import add, crunch_numbers, log_event
from myproject.celery import app as celery_app
from operations.testing import ManagedProcess, celery_argv, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def stored(task_id: str, status: str = "SUCCESS") -> TaskResult | None:
    return TaskResult.objects.filter(task_id=task_id, status=status).first()


def queue_length(name: str) -> int:
    with celery_app.connection_for_write() as conn:
        try:
            return conn.default_channel.queue_declare(queue=name, passive=True).message_count
        except ChannelError:  # Redis drops an empty list: no queue left means no message.
            return 0


@pytest.mark.smoke
def test_add_delay_gives_8_and_stores_the_row(celery_worker) -> None:
    result = add.delay(3, 5)
    assert result.get(timeout=30) == 8
    row = TaskResult.objects.get(task_id=result.id)
    assert row.status == "SUCCESS"
    assert row.task_name == "app.tasks.add"
    assert json.loads(row.task_args) == "(3, 5)"
    assert row.result == "8"
    assert row.worker.startswith("main-")
    assert row.date_started is not None
    assert row.date_done >= row.date_started


def test_delay_on_commit_sends_after_the_commit_and_nothing_on_rollback(celery_worker) -> None:
    """Celery's Django task class keeps its on-commit methods under the product's task class."""
    from django.db import transaction

    from reliability.models import Delivery

    with transaction.atomic():
        add.delay_on_commit(2, 3)
        assert not TaskResult.objects.filter(task_name="app.tasks.add", result="5").exists()
    row = wait_for(
        lambda: TaskResult.objects.filter(task_name="app.tasks.add", result="5").first(), 30
    )
    assert Delivery.objects.filter(task_id=row.task_id).count() == 1  # claimed, ran once

    def rolled_back() -> None:
        with transaction.atomic():
            add.delay_on_commit(4, 4000)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        rolled_back()
    probe = add.delay(1, 1)
    assert probe.get(timeout=30) == 2
    assert not TaskResult.objects.filter(task_name="app.tasks.add", result="4004").exists()


def test_test_view_answers_before_the_task_is_done(client: Client, celery_worker) -> None:
    response = client.get("/test/")
    assert response.status_code == 200
    assert response.content == b"Celery works"
    # add sleeps 2 s: had the view waited for it, its row would already say SUCCESS.
    assert not TaskResult.objects.filter(task_name="app.tasks.add", status="SUCCESS").exists()
    row = wait_for(lambda: stored_any("app.tasks.add"), timeout=30)
    assert json.loads(row.task_args) == "(3, 5)"
    assert row.result == "8"


def stored_any(task_name: str) -> TaskResult | None:
    return TaskResult.objects.filter(task_name=task_name, status="SUCCESS").first()


def test_apply_async_view_id_matches_the_stored_row(client: Client, celery_worker) -> None:
    body = client.get("/test/apply_async/").content.decode()
    match = re.fullmatch(r"([0-9a-f-]{36}) : (\w+)", body)
    assert match, body
    task_id, status = match.groups()
    assert status == "PENDING"
    assert client.get(f"/test/result/{task_id}/").json()["status"] in {"PENDING", "STARTED"}
    wait_for(lambda: stored(task_id), timeout=30)
    assert AsyncResult(task_id).status == "SUCCESS"
    assert AsyncResult(task_id).result == 8
    data = client.get(f"/test/result/{task_id}/").json()
    assert data == {"task_id": task_id, "status": "SUCCESS", "ready": True, "result": 8}


@pytest.mark.smoke
def test_heavy_task_waits_on_heavy_tasks_until_a_worker_consumes_it(
    celery_worker, start_worker
) -> None:
    result = crunch_numbers.delay(1000)
    # The session worker consumes only `default`: the message stays on heavy_tasks.
    wait_for(lambda: queue_length("heavy_tasks") == 1, timeout=10)
    assert result.status == "PENDING"
    heavy = start_worker(queues="heavy_tasks", concurrency=1, name="heavy")
    assert result.get(timeout=30) == sum(i * i for i in range(1000))
    row = TaskResult.objects.get(task_id=result.id)
    assert row.worker.startswith(heavy.name.split("@")[0])
    assert queue_length("heavy_tasks") == 0
    assert result.id not in celery_worker.output


def test_time_limits_stop_a_task_that_runs_too_long(start_worker, subprocess_env) -> None:
    # Celery stamps the publisher's CELERY_TASK_(SOFT_)TIME_LIMIT into each message, so the
    # limits are set where the tasks are sent: here, a manage.py shell with its own environment.
    start_worker(name="limits", queues="heavy_tasks")
    script = (
        "from app.tasks import nap\n"
        "print(nap.apply_async(args=[30], queue='heavy_tasks').id)\n"
        "print(nap.apply_async(args=[30, True], queue='heavy_tasks').id)\n"
    )
    env = {**subprocess_env, "CELERY_TASK_SOFT_TIME_LIMIT": "1", "CELERY_TASK_TIME_LIMIT": "2"}
    sent = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v0", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    soft_id, hard_id = sent.stdout.split()
    soft_row = wait_for(lambda: stored(soft_id, "FAILURE"), timeout=30)
    hard_row = wait_for(lambda: stored(hard_id, "FAILURE"), timeout=30)
    assert "SoftTimeLimitExceeded" in soft_row.result
    assert "TimeLimitExceeded" in hard_row.result
    assert "SoftTimeLimitExceeded" not in hard_row.result


@pytest.mark.smoke
def test_ignore_result_leaves_no_row(celery_worker) -> None:
    result = log_event.delay("ignored result")
    wait_for(lambda: Event.objects.filter(message="ignored result").exists(), timeout=30)
    celery_worker.wait_for_output(f"{result.id}] succeeded", timeout=30)
    assert not TaskResult.objects.filter(task_id=result.id).exists()
    assert AsyncResult(result.id).status == "PENDING"


def test_rate_limit_spreads_the_starts_of_add(start_worker) -> None:
    # Ten threads could start ten adds at once; the 10/s rate limit spaces them out.
    # A queue of its own, so the module's other worker takes none of these.
    start_worker(name="rate", queues="rate_limit_test", pool="threads", concurrency=10)
    results = [add.apply_async((i, i), queue="rate_limit_test") for i in range(10)]
    for result in results:
        result.get(timeout=60)
    starts = sorted(
        TaskResult.objects.filter(task_id__in=[r.id for r in results]).values_list(
            "date_started", flat=True
        )
    )
    assert len(starts) == 10
    assert (starts[-1] - starts[0]).total_seconds() >= 0.8


def test_tutorial_worker_command_lists_tasks_and_is_ready(subprocess_env) -> None:
    # Verbatim from the tutorial: celery -A myproject worker -l info
    worker = ManagedProcess(celery_argv("worker", "-l", "info"), subprocess_env, "tutorial")
    try:
        worker.wait_for_output(" ready.", timeout=60)
        output = worker.output
        tasks_section = output.split("[tasks]", 1)[1]
        assert ". app.tasks.add" in tasks_section
        assert ". myproject.celery.debug_task" in tasks_section
        # The chaos suite's ledger tasks (one of which kills its own worker) are not offered.
        assert "ledger" not in tasks_section
        assert ".> default" in output
        assert ".> heavy_tasks" in output
        # The banner names the result backend, as the tutorial's shows its own.
        assert ".> results:     django-db" in output
        from myproject.celery import debug_task

        # Only this worker consumes heavy_tasks now, so it is the one that runs it.
        debug_task.apply_async(queue="heavy_tasks")
        worker.wait_for_output("Request: <Context:", timeout=30)
    finally:
        assert worker.stop() == 0
