"""enqueue_many against a real Redis and a real worker: every call runs once and is recorded.

On Redis enqueue_many writes the queue's list itself (see taskconsole.bulk); these tests hold
that path to what ``delay()`` does: the same message (every field, in the same order, apart
from ids and publishing times), run the same way by a worker, recorded the same way by the
console. The kombu path it falls back to (RabbitMQ, other signal receivers...) is covered too.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from celery import signals
from django.db import OperationalError, transaction
from django.test import override_settings
from django_celery_results.models import TaskResult
from kombu import Connection
from kombu import Queue as KombuQueue
from kombu.messaging import Producer

from app.tasks import add
from operations.testing import wait_for
from taskconsole import buffer, capture, context
from taskconsole.bulk import BulkPublishError, enqueue_many
from taskconsole.models import Origin, TaskRecord, TaskStatus

from .sample_tasks import echo_task

pytestmark = [pytest.mark.django_db(transaction=True)]

QUEUE = "tc_bulk"
#: No worker consumes it: the tests read what was pushed there.
IDLE = "tc_bulk_idle"
#: Record fields that differ between any two tasks.
PER_TASK = {"id", "task_id", "root_id", "created_at", "started_at", "finished_at", "worker"}


@pytest.fixture(scope="module")
def worker(start_module_worker):
    return start_module_worker(
        queues=QUEUE,
        concurrency=2,
        name="bulk",
        extra_args=("-I", "taskconsole.tests.sample_tasks"),
    )


@pytest.fixture
def broker(broker_url: str) -> Iterator[redis.Redis]:
    """The test broker's Redis, with the idle queue emptied before and after."""
    if not broker_url.startswith("redis"):
        pytest.skip("the Redis path needs Redis as the broker")
    client = redis.Redis.from_url(broker_url)
    client.delete(IDLE)
    yield client
    client.delete(IDLE)
    client.close()


@pytest.fixture
def kombu_publishes(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Messages that went through kombu's Producer.publish (still sent for real)."""
    calls: list[dict] = []
    real = Producer.publish

    def publish(self, body, *args, **kwargs):
        if (kwargs.get("headers") or {}).get("task"):
            calls.append(kwargs["headers"])
        return real(self, body, *args, **kwargs)

    monkeypatch.setattr(Producer, "publish", publish)
    return calls


@pytest.fixture
def without_console_handler() -> Iterator[None]:
    """Publish as a process without the console's publish handler: the worker records."""
    signals.before_task_publish.disconnect(dispatch_uid="tc_publish")
    try:
        yield
    finally:
        signals.before_task_publish.connect(
            capture.on_before_publish, weak=False, dispatch_uid="tc_publish"
        )


@pytest.fixture
def refuse_push(monkeypatch: pytest.MonkeyPatch):
    """refuse_push(n, error): the n-th LPUSH raises `error` instead; returns the sizes of the
    pushes tried."""

    def refuse(nth: int, error: BaseException) -> list[int]:
        real = redis.Redis.lpush
        pushes: list[int] = []

        def lpush(self, name, *values):
            pushes.append(len(values))
            if len(pushes) == nth:
                raise error
            return real(self, name, *values)

        monkeypatch.setattr(redis.Redis, "lpush", lpush)
        return pushes

    return refuse


def _in_row_order(task_ids: list[str]) -> list[str]:
    """The tasks' ids in the order of their records (the order the console lists them)."""
    records = TaskRecord.objects.filter(task_id__in=task_ids).order_by("id")
    return list(records.values_list("task_id", flat=True))


def _pushed(client: redis.Redis) -> list[dict]:
    """The messages on the idle queue, oldest first (the order a worker takes them)."""
    return [json.loads(raw) for raw in reversed(client.lrange(IDLE, 0, -1))]


def _body(message: dict) -> list:
    return json.loads(base64.b64decode(message["body"]))


def _record(task_id: str) -> dict:
    values = TaskRecord.objects.filter(task_id=task_id).values().get()
    return {key: value for key, value in values.items() if key not in PER_TASK}


@pytest.mark.integration
def test_every_call_runs_once_with_its_arguments_and_is_recorded(
    worker, kombu_publishes, broker_url
) -> None:
    calls = [(i + 1000,) for i in range(119)] + [{"value": 7, "api_token": "s3cret"}]
    ids = enqueue_many(echo_task, calls, queue=QUEUE, chunk=50)
    assert len(ids) == len(set(ids)) == 120
    # On Redis none of them went through kombu's publish (one LPUSH per chunk); elsewhere
    # every one did.
    assert len(kombu_publishes) == (0 if broker_url.startswith("redis") else 120)
    done = wait_for(
        lambda: TaskResult.objects.filter(task_id__in=ids, status="SUCCESS").count() == 120 or None,
        timeout=90,
    )
    assert done
    results = dict(TaskResult.objects.filter(task_id__in=ids).values_list("task_id", "result"))
    assert [int(results[task_id]) for task_id in ids] == [i + 1000 for i in range(119)] + [7]
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
    assert row.root_id == ids[7]
    assert row.queue == QUEUE
    assert row.origin == "code"
    secret = TaskRecord.objects.get(task_id=ids[-1])
    assert secret.kwargs == {"value": 7, "api_token": "********"}
    assert secret.redacted
    stored = TaskResult.objects.get(task_id=ids[-1])
    assert "s3cret" not in stored.task_kwargs


@pytest.mark.integration
def test_a_worker_runs_and_records_a_bulk_message_as_it_does_a_delay_message(
    worker, without_console_handler
) -> None:
    # Without the publisher's records, the worker makes each record from the message alone:
    # the two rows show what it read (name, arguments, root id, queue, outcome).
    call = ((5,), {"api_token": "abc"})
    sent = echo_task.apply_async(*call, queue=QUEUE).id
    (bulk,) = enqueue_many(echo_task, [call], queue=QUEUE)
    finished = wait_for(
        lambda: (
            TaskRecord.objects.filter(task_id__in=[sent, bulk], status=TaskStatus.SUCCESS).count()
            == 2
            or None
        ),
        timeout=60,
    )
    assert finished
    assert _record(bulk) == _record(sent)
    assert TaskRecord.objects.get(task_id=bulk).root_id == bulk
    assert _record(bulk)["result"] == "5"
    fields = ("status", "task_name", "task_args", "task_kwargs", "result", "content_type")
    results = {
        row["task_id"]: {key: row[key] for key in fields}
        for row in TaskResult.objects.filter(task_id__in=[sent, bulk]).values()
    }
    assert results[bulk] == results[sent]
    assert results[bulk]["task_args"] == '"(5,)"'


@pytest.mark.parametrize(
    ("options", "by_user"),
    [({}, False), ({"countdown": 60, "expires": 600}, False), ({}, True)],
    ids=["plain", "countdown-expires", "launched-by-a-user"],
)
def test_the_pushed_message_is_the_one_delay_pushes_apart_from_ids(
    broker, make_user, options, by_user
) -> None:
    call = ((3,), {"api_token": {"nested": "s3cret"}})
    launcher = context.Launcher(make_user().pk, Origin.USER) if by_user else None
    with context.launched_by(launcher):
        sent = echo_task.apply_async(*call, queue=IDLE, **options).id
        (bulk,) = enqueue_many(echo_task, [call], queue=IDLE, **options)
    reference, ours = _pushed(broker)
    assert (capture.OWNER_HEADER in ours["headers"]) is by_user
    assert (reference["headers"]["id"], ours["headers"]["id"]) == (sent, bulk)

    # Secrets are out of the text form of the arguments, in both.
    assert "s3cret" not in ours["headers"]["kwargsrepr"]
    assert ours["headers"]["argsrepr"] == "(3,)"
    # The same body once decoded.
    assert _body(ours) == _body(reference) == [[3], call[1], _body(reference)[2]]

    published: list[float] = []

    def comparable(message: dict, task_id: str) -> str:
        message = json.loads(json.dumps(message))
        headers, properties = message["headers"], message["properties"]
        for key in ("id", "root_id"):
            assert headers[key] == task_id
            headers[key] = "<id>"
        assert properties["correlation_id"] == task_id
        properties["correlation_id"] = "<id>"
        assert len(properties["delivery_tag"]) == 36
        properties["delivery_tag"] = "<tag>"
        # Times of publishing, compared apart below (rounding both could split them across
        # a second).
        published.append(headers["taskconsole_record"][2])
        headers["taskconsole_record"][2] = "<published>"
        for key in ("eta", "expires"):
            if headers[key]:
                headers[key] = headers[key][:16]
        if "expiration" in properties:
            properties["expiration"] = str(round(int(properties["expiration"]), -4))
        message["body"] = _body(message)
        # Key order too: the comparison is of the JSON text.
        return json.dumps(message)

    assert comparable(ours, bulk) == comparable(reference, sent)
    assert abs(published[0] - published[1]) < 1  # the two were published within a second
    if options:
        assert ours["headers"]["eta"]
        assert ours["properties"]["expiration"]

    buffer.flush()
    record, reference_record = _record(bulk), _record(sent)
    if options:
        assert abs(record.pop("eta") - reference_record.pop("eta")) < timedelta(seconds=1)
    assert record == reference_record
    assert record["origin"] == (Origin.USER if by_user else Origin.CODE)
    assert record["kwargs"]["api_token"] == "********"
    assert record["redacted"]
    assert record["status"] == (TaskStatus.SCHEDULED if options else TaskStatus.QUEUED)


def test_other_publish_signal_receivers_see_every_message(broker, kombu_publishes) -> None:
    seen: list[str] = []

    def receiver(headers=None, **_):
        seen.append(headers["id"])

    signals.before_task_publish.connect(receiver, weak=False, dispatch_uid="test_bulk_seen")
    try:
        ids = enqueue_many(echo_task, [(1,), (2,), (3,)], queue=IDLE)
    finally:
        signals.before_task_publish.disconnect(dispatch_uid="test_bulk_seen")
    # kombu's path, message by message, in order.
    assert seen == ids
    assert [headers["id"] for headers in kombu_publishes] == ids
    assert [message["headers"]["id"] for message in _pushed(broker)] == ids
    buffer.flush()
    assert TaskRecord.objects.filter(task_id__in=ids).count() == 3


@pytest.mark.database
def test_a_round_larger_than_the_buffer_is_recorded_before_it_is_pushed(broker) -> None:
    with override_settings(TASKCONSOLE_BUFFER_SIZE=100):
        ids = enqueue_many(echo_task, [(i,) for i in range(700)], queue=IDLE, chunk=100)
        # Written by the call itself, not left to the buffer.
        assert buffer.pending() == 0
    stored = dict(TaskRecord.objects.filter(task_id__in=ids).values_list("task_id", "args"))
    assert [stored[task_id] for task_id in ids] == [[i] for i in range(700)]
    assert [message["headers"]["id"] for message in _pushed(broker)] == ids


def test_inside_a_transaction_records_are_written_with_it(broker) -> None:
    with transaction.atomic():
        ids = enqueue_many(echo_task, [(1,), (2,)], queue=IDLE)
        # Not buffered: in the caller's transaction, before the messages were sent.
        assert buffer.pending() == 0
        assert TaskRecord.objects.filter(task_id__in=ids).count() == 2
    pushed = _pushed(broker)
    assert [message["headers"]["id"] for message in pushed] == ids
    # Nothing for a worker to record from: the record exists.
    assert capture.RECORD_HEADER not in pushed[0]["headers"]


@pytest.mark.smoke
def test_a_kombu_consumer_reads_every_message_in_order(broker_url: str) -> None:
    # On Redis the fast path, on RabbitMQ kombu's own publishing: either way, a consumer
    # gets every task, in the order of the calls, with its arguments.
    calls = [(i,) for i in range(30)] + [{"value": 30, "api_token": "s3cret"}]
    with Connection(broker_url) as conn:
        queue = conn.SimpleQueue(IDLE, no_ack=True)
        try:
            ids = enqueue_many(echo_task, calls, queue=IDLE, chunk=8)
            read = []
            for _ in calls:
                message = queue.get(timeout=10)
                args, kwargs, _embed = message.decode()
                read.append((message.headers["id"], args, kwargs))
            with pytest.raises(queue.Empty):
                queue.get(timeout=0.2)
        finally:
            queue.close()
            KombuQueue(IDLE).bind(conn.default_channel).delete()
    assert read == [(ids[i], [i], {}) for i in range(30)] + [
        (ids[30], [], {"value": 30, "api_token": "s3cret"})
    ]
    buffer.flush()
    assert TaskRecord.objects.filter(task_id__in=ids, status=TaskStatus.QUEUED).count() == 31


def test_a_refused_chunk_fails_its_records_and_lists_what_was_published(
    broker, refuse_push
) -> None:
    pushes = refuse_push(2, redis.ConnectionError("connection lost"))
    with pytest.raises(BulkPublishError) as raised:
        enqueue_many(echo_task, [(i,) for i in range(25)], queue=IDLE, chunk=10)
    published = raised.value.published_ids
    assert pushes == [10, 10]
    assert len(published) == 10
    assert "refused 15 tasks" in str(raised.value)
    assert [message["headers"]["id"] for message in _pushed(broker)] == published
    buffer.flush()
    records = TaskRecord.objects.filter(name="tc_tests.echo", queue=IDLE)
    assert set(records.filter(status=TaskStatus.QUEUED).values_list("task_id", flat=True)) == set(
        published
    )
    failed = records.filter(status=TaskStatus.FAILURE, exception__startswith="Not published")
    assert failed.count() == 15
    # Recorded in the order of the calls (the console lists tasks by row id).
    ordered = list(records.order_by("id").values_list("task_id", flat=True))
    assert ordered[:10] == published
    assert len(ordered) == 25


@pytest.fixture
def small_rounds(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Rounds of 20 tasks whose records are written directly (past the buffer's size): on a
    database server a thread writes each round's records while the next round is built."""
    from taskconsole import bulk

    monkeypatch.setattr(bulk, "RECORD_BATCH", 20)
    with override_settings(TASKCONSOLE_BUFFER_SIZE=10):
        yield


@pytest.mark.database
def test_each_round_is_recorded_before_it_is_pushed(
    broker, small_rounds, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = redis.Redis.lpush
    unrecorded: list[str] = []

    def lpush(self, name, *values):
        ids = [json.loads(value)["headers"]["id"] for value in values]
        recorded = set(TaskRecord.objects.filter(task_id__in=ids).values_list("task_id", flat=True))
        unrecorded.extend(set(ids) - recorded)
        return real(self, name, *values)

    monkeypatch.setattr(redis.Redis, "lpush", lpush)
    ids = enqueue_many(echo_task, [(i,) for i in range(95)], queue=IDLE, chunk=10)
    assert unrecorded == []
    assert buffer.pending() == 0
    assert [message["headers"]["id"] for message in _pushed(broker)] == ids
    stored = dict(TaskRecord.objects.filter(task_id__in=ids).values_list("task_id", "args"))
    assert [stored[task_id] for task_id in ids] == [[i] for i in range(95)]
    # In the order of the calls (the console lists tasks by row id).
    assert _in_row_order(ids) == ids


@pytest.mark.database
def test_a_refused_round_fails_the_recorded_round_after_it(
    broker, small_rounds, refuse_push
) -> None:
    # The first round goes out; the second's first chunk is refused, while the third round is
    # already built and recorded. Neither may stay queued; the rounds after are never built.
    refuse_push(3, redis.ConnectionError("connection lost"))
    with pytest.raises(BulkPublishError) as raised:
        enqueue_many(echo_task, [(i,) for i in range(95)], queue=IDLE, chunk=10)
    published = raised.value.published_ids
    assert len(published) == 20
    assert "refused 40 tasks" in str(raised.value)
    assert [message["headers"]["id"] for message in _pushed(broker)] == published
    buffer.flush()
    records = TaskRecord.objects.filter(name="tc_tests.echo", queue=IDLE)
    queued = set(records.filter(status=TaskStatus.QUEUED).values_list("task_id", flat=True))
    assert queued == set(published)
    failed = records.filter(status=TaskStatus.FAILURE, exception__startswith="Not published")
    assert sorted(args[0] for args in failed.values_list("args", flat=True)) == list(range(20, 60))
    assert records.count() == 60


@pytest.mark.database
def test_the_rounds_rows_follow_the_calls_when_the_writer_thread_lags(
    broker, small_rounds, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The thread writing a round may still be at it when the last round is built: that round
    # must not be written beside it (by the caller), or its rows come first.
    from taskconsole.bulk_redis import _RecordPlan

    real = _RecordPlan.save

    def save(self, entries):
        if threading.current_thread().name.startswith("taskconsole-bulk"):
            time.sleep(0.2)
        real(self, entries)

    monkeypatch.setattr(_RecordPlan, "save", save)
    ids = enqueue_many(echo_task, [(i,) for i in range(65)], queue=IDLE, chunk=10)
    buffer.flush()  # a last round too small to be written apart goes to the buffer
    assert _in_row_order(ids) == ids


@pytest.mark.database
def test_a_database_gone_with_the_broker_still_names_the_published_tasks(
    broker, small_rounds, refuse_push, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    # The push is refused and the records of the tasks that did not go out cannot be marked
    # failed either: the caller still gets the error that lists the tasks that went out.
    from django.db.models import QuerySet

    refuse_push(3, redis.ConnectionError("connection lost"))
    real_update = QuerySet.update

    def update(self, **fields):
        if fields.get("status") == TaskStatus.FAILURE:
            raise OperationalError("server closed the connection unexpectedly")
        return real_update(self, **fields)

    monkeypatch.setattr(QuerySet, "update", update)
    with pytest.raises(BulkPublishError) as raised:
        enqueue_many(echo_task, [(i,) for i in range(95)], queue=IDLE, chunk=10)
    published = raised.value.published_ids
    assert [message["headers"]["id"] for message in _pushed(broker)] == published
    assert len(published) == 20
    [logged] = [r for r in caplog.records if "could not be marked failed" in r.getMessage()]
    assert "40 tasks were not published" in logged.getMessage()


@pytest.mark.database
def test_an_interrupted_call_leaves_no_recorded_task_queued(
    broker, small_rounds, refuse_push
) -> None:
    # Not a refusal the publisher expects: the round being pushed and the one recorded after
    # it are failed all the same, and the interruption goes on up.
    refuse_push(3, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        enqueue_many(echo_task, [(i,) for i in range(95)], queue=IDLE, chunk=10)
    pushed = [message["headers"]["id"] for message in _pushed(broker)]
    assert len(pushed) == 20
    buffer.flush()
    records = TaskRecord.objects.filter(name="tc_tests.echo", queue=IDLE)
    queued = set(records.filter(status=TaskStatus.QUEUED).values_list("task_id", flat=True))
    assert queued == set(pushed)
    failed = records.filter(status=TaskStatus.FAILURE, exception__startswith="Not published")
    assert failed.count() == 40


@pytest.mark.database
def test_a_round_that_cannot_be_built_sends_the_round_before_it(
    broker, small_rounds, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskconsole.bulk_redis import RedisPublisher

    real = RedisPublisher._template
    built = []

    def template(self, headers):
        built.append(1)
        if len(built) == 2:
            raise RuntimeError("no template")
        return real(self, headers)

    monkeypatch.setattr(RedisPublisher, "_template", template)
    with pytest.raises(BulkPublishError) as raised:
        enqueue_many(echo_task, [(i,) for i in range(95)], queue=IDLE, chunk=10)
    published = raised.value.published_ids
    assert len(published) == 20
    assert [message["headers"]["id"] for message in _pushed(broker)] == published
    buffer.flush()
    records = TaskRecord.objects.filter(name="tc_tests.echo", queue=IDLE)
    assert set(records.values_list("task_id", "status")) == {
        (task_id, TaskStatus.QUEUED) for task_id in published
    }


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


def test_bad_calls_are_refused_before_anything_is_published(broker) -> None:
    with pytest.raises(TypeError):
        enqueue_many(add, [1, 2], queue=IDLE)
    # Arguments the task does not take, as delay() refuses them.
    with pytest.raises(TypeError):
        enqueue_many(add, [(1, 2), (1, 2, 3)], queue=IDLE)
    assert _pushed(broker) == []
    buffer.flush()
    assert not TaskRecord.objects.filter(queue=IDLE).exists()
    assert enqueue_many(add, []) == []


def test_the_garbage_collector_is_paused_while_two_threads_enqueue_then_runs_again() -> None:
    import gc

    from taskconsole.bulk import cyclic_gc_paused

    assert gc.isenabled()
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with cyclic_gc_paused():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=other)
    with cyclic_gc_paused():
        thread.start()
        inside.wait(10)
        assert not gc.isenabled()
    # The other thread still enqueues: the collector stays paused until it is done.
    assert not gc.isenabled()
    release.set()
    thread.join(10)
    assert gc.isenabled()
    # A process that had paused it itself keeps it paused.
    gc.disable()
    try:
        with cyclic_gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_large_enqueue_pauses_the_collector_a_small_one_does_not(monkeypatch) -> None:
    import gc

    from taskconsole import bulk

    seen = []

    def record(task, calls, *args):
        seen.append((len(calls), gc.isenabled()))
        if len(calls) > 1:
            raise RuntimeError("boom")
        return []

    monkeypatch.setattr(bulk, "_enqueue_many", record)
    bulk.enqueue_many(add, [(1, 2)])
    with pytest.raises(RuntimeError, match="boom"):
        bulk.enqueue_many(add, ((i, i) for i in range(bulk.GC_PAUSE_FROM)))
    assert seen == [(1, True), (bulk.GC_PAUSE_FROM, False)]
    # Failed or not, the collector runs again after the call.
    assert gc.isenabled()


def test_a_child_forked_during_a_pause_collects_garbage() -> None:
    import gc
    import os

    from taskconsole.bulk import cyclic_gc_paused

    with cyclic_gc_paused():
        pid = os.fork()
        if pid == 0:  # the child
            os._exit(0 if gc.isenabled() else 1)
        _, status = os.waitpid(pid, 0)
        assert not gc.isenabled()
    assert os.waitstatus_to_exitcode(status) == 0
    assert gc.isenabled()
