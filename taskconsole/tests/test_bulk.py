"""enqueue_many against a real Redis and a real worker: every call runs once and is recorded."""

from __future__ import annotations

import pytest
from django_celery_results.models import TaskResult
from kombu import Connection

from app.tasks import add
from operations.testing import wait_for
from taskconsole import buffer
from taskconsole.bulk import BulkPublishError, enqueue_many
from taskconsole.models import TaskRecord, TaskStatus

from .sample_tasks import echo_task

pytestmark = [pytest.mark.django_db(transaction=True)]

QUEUE = "tc_bulk"


@pytest.fixture(scope="module")
def worker(start_module_worker):
    return start_module_worker(
        queues=QUEUE,
        concurrency=2,
        name="bulk",
        extra_args=("-I", "taskconsole.tests.sample_tasks"),
    )


@pytest.mark.integration
def test_every_call_runs_once_with_its_arguments_and_is_recorded(worker) -> None:
    calls = [(i + 1000,) for i in range(120)]
    ids = enqueue_many(echo_task, calls, queue=QUEUE, chunk=50)
    assert len(ids) == len(set(ids)) == 120
    done = wait_for(
        lambda: TaskResult.objects.filter(task_id__in=ids, status="SUCCESS").count() == 120 or None,
        timeout=90,
    )
    assert done
    results = dict(TaskResult.objects.filter(task_id__in=ids).values_list("task_id", "result"))
    assert [int(results[task_id]) for task_id in ids] == [i + 1000 for i in range(120)]
    records = wait_for(
        lambda: (
            TaskRecord.objects.filter(task_id__in=ids, status=TaskStatus.SUCCESS).count() == 120
            or None
        ),
        timeout=60,
    )
    assert records
    row = TaskRecord.objects.get(task_id=ids[7])
    assert row.name == "tc_tests.echo"
    assert row.args == [1007]
    assert row.queue == QUEUE


@pytest.mark.integration
def test_kwargs_calls_and_secrets_are_redacted_in_the_message_and_the_record(worker, sent) -> None:
    ids = enqueue_many(echo_task, [{"value": 1, "api_token": "s3cret"}], queue=QUEUE)
    buffer.flush()
    assert len(sent) == 1
    headers = sent[0]["headers"]
    assert headers["id"] == ids[0]
    assert "s3cret" not in headers["kwargsrepr"]
    assert sent[0]["routing_key"] == QUEUE
    record = TaskRecord.objects.get(task_id=ids[0])
    assert record.redacted
    assert "s3cret" not in str(record.kwargs)
    assert record.status == TaskStatus.QUEUED


def test_an_argument_json_cannot_carry_fails_the_chunk_and_loses_nothing_recorded() -> None:
    with pytest.raises(BulkPublishError) as raised:
        enqueue_many(add, [(1, 2), (object(), 3)], queue=QUEUE, chunk=10)
    assert raised.value.published_ids == []
    buffer.flush()
    # The recorded calls of the refused chunk are failed, never left queued.
    assert not TaskRecord.objects.filter(
        name="app.tasks.add", status=TaskStatus.QUEUED, queue=QUEUE
    ).exists()
    assert TaskRecord.objects.filter(
        name="app.tasks.add", status=TaskStatus.FAILURE, exception__startswith="Not published"
    ).exists()


def test_a_broker_that_is_down_is_a_clear_error() -> None:
    from myproject.celery import app

    with Connection("redis://127.0.0.1:1/0", connect_timeout=1) as down:
        producer = app.amqp.Producer(down, auto_declare=False)
        with pytest.raises(BulkPublishError) as raised:
            enqueue_many(add, [(1, 2), (3, 4)], queue=QUEUE, producer=producer)
    assert "refused 2 tasks" in str(raised.value)
    buffer.flush()
    assert not TaskRecord.objects.filter(queue=QUEUE, status=TaskStatus.QUEUED).exists()


def test_bad_calls_are_refused_before_anything_is_published(sent) -> None:
    with pytest.raises(TypeError):
        enqueue_many(add, [1, 2])
    assert sent == []
    assert enqueue_many(add, []) == []
