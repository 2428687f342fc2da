"""A worker's writes about its tasks, deferred and merged (taskconsole.writeback).

The unit tests drive the handlers and the result backend as a worker process would, with the
process marked as a worker; the integration tests run a real worker and watch its writes
arrive (or wait) in the database.
"""

from __future__ import annotations

import uuid

import pytest
from celery import states
from celery.app.task import Context
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django_celery_results.models import TaskResult

from myproject.celery import app as celery_app
from operations.testing import wait_for
from taskconsole import capture, context, writeback
from taskconsole.models import TaskRecord, TaskStatus

from .sample_tasks import echo_task

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def in_worker(monkeypatch: pytest.MonkeyPatch):
    """This process plays a worker's: writes wait for flush() (the thread is not started)."""
    monkeypatch.setattr(writeback, "_in_worker", True)
    monkeypatch.setattr(writeback._writes, "_start", lambda: None)
    yield
    writeback._writes.take()
    # on_prerun made this thread a running task's (task_postrun would undo it in a worker).
    context.set_worker_launcher(None)


def run_request(task_id: str, **extra) -> Context:
    fields = {
        "id": task_id,
        "task": echo_task.name,
        "args": [3],
        "kwargs": {},
        "hostname": "w1@host",
        "retries": 0,
        "is_eager": False,
        "delivery_info": {"routing_key": "default"},
        **extra,
    }
    return Context(fields)


def start_and_finish(task_id: str, result: int = 3, **extra) -> None:
    """What the tracer does around a task body: prerun, STARTED, SUCCESS, task_success."""
    echo_task.push_request(**run_request(task_id, **extra).__dict__)
    try:
        request = echo_task.request
        capture.on_prerun(task_id=task_id, task=echo_task)
        celery_app.backend.store_result(task_id, {"pid": 1}, states.STARTED, request=request)
        celery_app.backend.store_result(task_id, result, states.SUCCESS, request=request)
        capture.on_success(sender=echo_task, result=result)
    finally:
        echo_task.pop_request()


def statements(queries: CaptureQueriesContext) -> list[str]:
    """The SQL run, an executemany as Django logs it ("N times: <statement>")."""
    return [q["sql"] for q in queries.captured_queries]


def queued(task_id: str) -> TaskRecord:
    return TaskRecord.objects.create(task_id=task_id, name=echo_task.name)


def test_a_task_start_and_outcome_wait_and_are_written_together(in_worker) -> None:
    task_id = str(uuid.uuid4())
    queued(task_id)
    start_and_finish(task_id)
    # Nothing written yet: one record write and one result write wait, merged.
    assert TaskRecord.objects.get(task_id=task_id).status == TaskStatus.QUEUED
    assert not TaskResult.objects.filter(task_id=task_id).exists()
    assert writeback.pending() == 2
    with CaptureQueriesContext(connection) as queries:
        assert writeback.flush() == 2
    written = statements(queries)
    # One transaction: the record's UPDATE and the result's upsert.
    assert sum(sql.startswith("1 times: UPDATE") for sql in written) == 1
    assert sum("INSERT INTO" in sql for sql in written) == 1
    assert sum(sql == "COMMIT" for sql in written) == 1
    record = TaskRecord.objects.get(task_id=task_id)
    assert (record.status, record.result, record.worker) == (TaskStatus.SUCCESS, "3", "w1@host")
    assert record.finished_at >= record.started_at
    result = TaskResult.objects.get(task_id=task_id)
    assert result.status == states.SUCCESS
    assert result.result == "3"
    assert result.task_name == echo_task.name
    # STARTED merged into the outcome: its time is kept.
    assert result.date_started is not None
    assert result.date_done >= result.date_started


def test_a_start_arriving_after_the_outcome_does_not_undo_it(in_worker) -> None:
    task_id = str(uuid.uuid4())
    queued(task_id)
    start_and_finish(task_id)
    # A second delivery of the finished run (which the task's claim then drops) starts it
    # again before the batch is written.
    echo_task.push_request(**run_request(task_id, hostname="w2@host").__dict__)
    try:
        capture.on_prerun(task_id=task_id, task=echo_task)
        celery_app.backend.store_result(
            task_id, {"pid": 2}, states.STARTED, request=echo_task.request
        )
    finally:
        echo_task.pop_request()
    writeback.flush()
    record = TaskRecord.objects.get(task_id=task_id)
    assert (record.status, record.worker) == (TaskStatus.SUCCESS, "w1@host")
    assert TaskResult.objects.get(task_id=task_id).status == states.SUCCESS


def test_a_start_written_before_its_outcome_has_all_its_columns(in_worker) -> None:
    # STARTED's columns are made by the flush, only when it is written on its own.
    task_id = str(uuid.uuid4())
    request = run_request(task_id)
    celery_app.backend.store_result(task_id, {"pid": 1}, states.STARTED, request=request)
    writeback.flush()
    row = TaskResult.objects.get(task_id=task_id)
    assert (row.status, row.task_name, row.worker) == (states.STARTED, echo_task.name, "w1@host")
    assert row.date_started is not None
    celery_app.backend.store_result(task_id, 3, states.SUCCESS, request=request)
    writeback.flush()
    row.refresh_from_db()
    assert (row.status, row.result) == (states.SUCCESS, "3")
    assert row.date_started is not None


def test_a_record_the_publisher_has_not_written_yet_is_created_by_the_flush(in_worker) -> None:
    task_id = str(uuid.uuid4())
    start_and_finish(task_id, result=4)
    writeback.flush()
    record = TaskRecord.objects.get(task_id=task_id)
    assert (record.status, record.args, record.queue) == (TaskStatus.SUCCESS, [3], "default")


def test_a_record_committed_between_the_update_and_the_check_gets_the_write(
    in_worker, monkeypatch
) -> None:
    # PostgreSQL: the publisher's buffered INSERT commits after the flush's UPDATE missed it.
    task_id = str(uuid.uuid4())
    start_and_finish(task_id)
    real = capture._existing

    def publisher_commits_now(task_ids):
        queued(task_id)
        return real(task_ids)

    monkeypatch.setattr(capture, "_existing", publisher_commits_now)
    writeback.flush()
    record = TaskRecord.objects.get(task_id=task_id)
    assert (record.status, record.worker, record.result) == (TaskStatus.SUCCESS, "w1@host", "3")


def test_a_batch_updates_its_records_together(in_worker) -> None:
    # One UPDATE run for every record of the batch; the one its publisher has not written
    # yet is then created.
    present = [str(uuid.uuid4()) for _ in range(3)]
    missing = str(uuid.uuid4())
    for task_id in present:
        queued(task_id)
    for n, task_id in enumerate([*present, missing]):
        start_and_finish(task_id, result=n)
    with CaptureQueriesContext(connection) as queries:
        writeback.flush()
    updates = [sql for sql in statements(queries) if sql.split(": ", 1)[-1].startswith("UPDATE")]
    assert updates[0].startswith("4 times: UPDATE")
    assert TaskRecord.objects.get(task_id=missing).args == [3]
    results = dict(TaskRecord.objects.values_list("task_id", "result"))
    assert [results[task_id] for task_id in [*present, missing]] == ["0", "1", "2", "3"]
    assert set(TaskRecord.objects.values_list("status", flat=True)) == {TaskStatus.SUCCESS}


def test_the_records_missing_from_a_batch_are_created_with_one_insert(in_worker) -> None:
    # At light load a task runs before its publisher's buffer writes the record, so every
    # task of a batch may be missing: they are made from their messages in one statement.
    missing = [str(uuid.uuid4()) for _ in range(5)]
    for n, task_id in enumerate(missing):
        start_and_finish(task_id, result=n)
    with CaptureQueriesContext(connection) as queries:
        writeback.flush()
    inserts = [q for q in statements(queries) if '"taskconsole_taskrecord"' in q and "INSERT" in q]
    assert len(inserts) == 1
    records = {r.task_id: r for r in TaskRecord.objects.filter(task_id__in=missing)}
    assert [records[task_id].result for task_id in missing] == ["0", "1", "2", "3", "4"]
    assert {(r.status, r.worker, tuple(r.args), r.queue) for r in records.values()} == {
        (TaskStatus.SUCCESS, "w1@host", (3,), "default")
    }


def test_a_record_inserted_by_its_publisher_during_the_flush_gets_the_write(
    in_worker, monkeypatch
) -> None:
    # PostgreSQL: the publisher's buffered INSERT commits after the flush found the record
    # missing, before the flush creates it. The flush's INSERT gives way to that row, and
    # the UPDATE run once more sets the outcome on it.
    task_id = str(uuid.uuid4())
    start_and_finish(task_id, result=7)
    real = capture._existing

    def publisher_commits_after_the_check(task_ids):
        found = real(task_ids)
        TaskRecord.objects.create(task_id=task_id, name=echo_task.name, origin_detail="publisher")
        return found

    monkeypatch.setattr(capture, "_existing", publisher_commits_after_the_check)
    writeback.flush()
    record = TaskRecord.objects.get(task_id=task_id)
    assert (record.origin_detail, record.status, record.result) == (
        "publisher",
        TaskStatus.SUCCESS,
        "7",
    )


def test_a_start_written_at_once_never_replaces_an_outcome_inserted_meanwhile(
    monkeypatch,
) -> None:
    # Outside the deferred path (TASKCONSOLE_WORKER_WRITE_BEHIND=False): the record is missing,
    # and another worker's outcome is inserted just before this STARTED's INSERT, which then
    # conflicts. The STARTED falls back to an UPDATE that leaves the outcome alone.
    task_id = str(uuid.uuid4())
    real = capture._new_record

    def finished_meanwhile(*args, **kwargs):
        TaskRecord.objects.create(
            task_id=task_id, name=echo_task.name, status=TaskStatus.SUCCESS, result="1"
        )
        return real(*args, **kwargs)

    monkeypatch.setattr(capture, "_new_record", finished_meanwhile)
    request = run_request(task_id, hostname="w2@host")
    pending = capture.Pending(
        {"status": TaskStatus.STARTED, "worker": "w2@host"}, True, echo_task.name, request
    )
    capture._write_record(task_id, pending)
    record = TaskRecord.objects.get(task_id=task_id)
    assert (record.status, record.result, record.worker) == (TaskStatus.SUCCESS, "1", "")


def test_a_finished_record_in_a_batch_with_a_missing_one_stays_finished(in_worker) -> None:
    # A second delivery of a finished run starts it again, in the same batch as a task whose
    # record its publisher has not written yet: only the missing one is created.
    finished, missing = str(uuid.uuid4()), str(uuid.uuid4())
    queued(finished)
    start_and_finish(finished, result=1)
    writeback.flush()
    echo_task.push_request(**run_request(finished, hostname="w2@host").__dict__)
    try:
        capture.on_prerun(task_id=finished, task=echo_task)
    finally:
        echo_task.pop_request()
    start_and_finish(missing, result=2)
    writeback.flush()
    record = TaskRecord.objects.get(task_id=finished)
    assert (record.status, record.worker, record.result) == (TaskStatus.SUCCESS, "w1@host", "1")
    assert TaskRecord.objects.get(task_id=missing).status == TaskStatus.SUCCESS


def test_a_missing_record_without_its_request_is_not_created(in_worker) -> None:
    # An outcome alone (no request to build the row from) leaves nothing behind.
    task_id = str(uuid.uuid4())
    capture._finish(task_id, request=run_request(task_id), status=TaskStatus.SUCCESS)
    assert writeback.pending() == 1
    writeback.flush()
    assert not TaskRecord.objects.filter(task_id=task_id).exists()


def test_a_chord_part_stores_its_result_at_once(in_worker) -> None:
    # Whichever part of a chord ends last reads the others' results from the database.
    task_id = str(uuid.uuid4())
    request = run_request(task_id, chord={"task": "tc_tests.echo"}, group=str(uuid.uuid4()))
    celery_app.backend.store_result(task_id, 5, states.SUCCESS, request=request)
    assert TaskResult.objects.get(task_id=task_id).status == states.SUCCESS


def test_nothing_waits_outside_a_worker_or_in_eager_mode(monkeypatch) -> None:
    assert not writeback.deferring(run_request("x"))
    monkeypatch.setattr(writeback, "_in_worker", True)
    assert writeback.deferring(run_request("x"))
    assert not writeback.deferring(run_request("x", is_eager=True))
    with monkeypatch.context() as m:
        m.setattr(writeback, "enabled", lambda: False)
        assert not writeback.deferring(run_request("x"))
    result = echo_task.apply(args=(6,))
    assert TaskRecord.objects.get(task_id=result.id).status == TaskStatus.SUCCESS


def test_a_synchronous_write_about_a_task_goes_after_its_waiting_ones(in_worker) -> None:
    task_id, other = str(uuid.uuid4()), str(uuid.uuid4())
    queued(task_id)
    queued(other)
    echo_task.push_request(**run_request(task_id).__dict__)
    try:
        capture.on_prerun(task_id=task_id, task=echo_task)
    finally:
        echo_task.pop_request()
    writeback.settle(other)
    assert writeback.pending() == 1
    # The retry's republish sets RETRY at once: the STARTED before it is written first.
    writeback.settle(task_id)
    assert writeback.pending() == 0
    assert TaskRecord.objects.get(task_id=task_id).status == TaskStatus.STARTED


def test_settle_waits_for_the_batch_being_written(in_worker) -> None:
    import threading

    task_id = str(uuid.uuid4())
    queued(task_id)
    start_and_finish(task_id)
    # The writer thread has taken the batch and is writing it (it holds the flush lock).
    writeback._writes._flush_lock.acquire()
    taken = writeback._writes.take()
    settled = threading.Event()
    waiter = threading.Thread(target=lambda: (writeback.settle(task_id), settled.set()))
    waiter.start()
    assert not settled.wait(0.3)
    writeback.write_all(taken)
    writeback._writes._flush_lock.release()
    assert settled.wait(5)
    waiter.join()
    assert TaskRecord.objects.get(task_id=task_id).status == TaskStatus.SUCCESS


def test_a_retry_is_stored_at_once(in_worker) -> None:
    # The retried run may finish in another worker before a deferred RETRY would be written.
    task_id = str(uuid.uuid4())
    request = run_request(task_id)
    celery_app.backend.store_result(task_id, {"pid": 1}, states.STARTED, request=request)
    celery_app.backend.store_result(task_id, RuntimeError("later"), states.RETRY, request=request)
    assert writeback.pending() == 0
    assert TaskResult.objects.get(task_id=task_id).status == states.RETRY


def test_one_bad_entry_does_not_lose_the_others(in_worker) -> None:
    good, bad = str(uuid.uuid4()), str(uuid.uuid4())
    queued(good)
    start_and_finish(good)
    # A record write that the database refuses (a launcher that does not exist).
    writeback.defer(
        capture.RECORD_WRITES,
        bad,
        capture.Pending({"owner_id": 10**9}, guard=False, name=echo_task.name, request=None),
    )
    queued(bad)
    assert writeback.flush() == 2
    assert TaskRecord.objects.get(task_id=good).status == TaskStatus.SUCCESS
    assert TaskResult.objects.get(task_id=good).status == states.SUCCESS
    assert TaskRecord.objects.get(task_id=bad).owner_id is None


def test_a_database_that_went_away_is_waited_for(in_worker, monkeypatch, settings) -> None:
    settings.TASKCONSOLE_FINISH_RETRY_SECONDS = 30
    task_id = str(uuid.uuid4())
    queued(task_id)
    start_and_finish(task_id)
    real, calls = writeback.write_all, []

    def down_once(entries):
        calls.append(len(entries))
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        real(entries)

    monkeypatch.setattr(writeback, "write_all", down_once)
    assert writeback.flush() == 2
    assert calls == [2, 2]
    assert TaskResult.objects.get(task_id=task_id).status == states.SUCCESS


def test_outcomes_outlast_a_database_away_longer_than_the_wait(
    in_worker, monkeypatch, settings
) -> None:
    """Given up after the wait, finished tasks read STARTED for ever: their worker answers,
    so no sweep fails them. They are kept and written once the database answers."""
    settings.TASKCONSOLE_FINISH_RETRY_SECONDS = 0
    task_id, later = str(uuid.uuid4()), str(uuid.uuid4())
    queued(task_id)
    queued(later)
    start_and_finish(task_id)
    real, tries = writeback.write_all, []

    def away(entries) -> None:
        tries.append(len(entries))
        raise OperationalError("away")

    monkeypatch.setattr(writeback, "write_all", away)
    # Collected long ago, as a batch is once the wait for the database has run out.
    writeback._writes._oldest -= 3600
    assert writeback.flush() == 0
    assert writeback.pending() == 2
    assert writeback._writes._retry_after() == writeback.RETRY_KEPT
    # Another task finishes meanwhile: its writes wait with the kept ones, instead of a flush
    # in the task's own thread that would wait for the database too.
    start_and_finish(later, result=7)
    assert writeback.pending() == 4
    assert tries == [2]
    # The database answers again.
    monkeypatch.setattr(writeback, "write_all", real)
    assert writeback.flush() == 4
    assert writeback.pending() == 0
    assert writeback._writes._retry_after() is None
    for done in (task_id, later):
        assert TaskRecord.objects.get(task_id=done).status == TaskStatus.SUCCESS
        assert TaskResult.objects.get(task_id=done).status == states.SUCCESS


@pytest.mark.integration
def test_a_real_worker_defers_its_writes_and_writes_them_when_it_stops(start_worker) -> None:
    worker = start_worker(
        queues="default",
        concurrency=1,
        name="writeback",
        extra_args=("-I", "taskconsole.tests.sample_tasks"),
        extra_env={"TASKCONSOLE_WORKER_WRITE_INTERVAL": "600"},
    )
    result = echo_task.delay(8)
    worker.wait_for_output(f"{result.id}] succeeded", timeout=60)
    # Ran, and its outcome waits in the worker (the interval is ten minutes).
    assert not TaskResult.objects.filter(task_id=result.id, status=states.SUCCESS).exists()
    record = wait_for(lambda: TaskRecord.objects.filter(task_id=result.id).first(), timeout=30)
    assert record.status == TaskStatus.QUEUED
    # A warm shutdown writes what waits.
    worker.stop()
    assert TaskResult.objects.get(task_id=result.id).status == states.SUCCESS
    record.refresh_from_db()
    assert (record.status, record.result) == (TaskStatus.SUCCESS, "8")
    assert record.worker.startswith("writeback")


@pytest.mark.integration
def test_a_burst_through_a_real_worker_is_recorded_whole(start_worker) -> None:
    start_worker(
        queues="default",
        concurrency=2,
        name="writeback-burst",
        extra_args=("-I", "taskconsole.tests.sample_tasks"),
    )
    ids = [echo_task.delay(i).id for i in range(200)]
    done = wait_for(
        lambda: TaskResult.objects.filter(task_id__in=ids, status=states.SUCCESS).count() == 200,
        timeout=120,
    )
    assert done
    assert TaskRecord.objects.filter(task_id__in=ids, status=TaskStatus.SUCCESS).count() == 200
    assert not TaskResult.objects.filter(task_id__in=ids, date_started=None).exists()
    assert not TaskRecord.objects.filter(task_id__in=ids, started_at=None).exists()
