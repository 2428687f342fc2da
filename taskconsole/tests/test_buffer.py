"""The publish buffer: records of plain publishes are written in bulk, off the request path."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid

import pytest
from django.db import IntegrityError, InternalError, OperationalError, connections, transaction
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

from operations.testing import wait_for
from taskconsole import actions, buffer, capture, queries
from taskconsole.context import Launcher, launched_by
from taskconsole.models import AuditEntry, Origin, TaskRecord, TaskStatus

from .sample_tasks import echo_task, sleep_task

pytestmark = pytest.mark.django_db(transaction=True)

#: Long enough that nothing is flushed by the thread while a test looks.
NEVER = 3600


@pytest.fixture(autouse=True)
def empty_buffer():
    buffer.flush()
    yield
    # Nothing buffered here may land in the next test's (emptied) tables.
    buffer.flush()


def rows(task_id: str) -> list[TaskRecord]:
    return list(TaskRecord.objects.filter(task_id=task_id))


def stamped(message: dict) -> list | None:
    return message["headers"].get(capture.RECORD_HEADER)


def test_a_plain_publish_is_buffered_and_the_thread_writes_it(sent) -> None:
    with override_settings(TASKCONSOLE_BUFFER_INTERVAL=NEVER):
        result = echo_task.delay(1)
        assert rows(result.id) == []
        assert buffer.pending() == 1
        [message] = sent
        origin, detail, published_at = stamped(message)
        assert (origin, detail) == (Origin.CODE, "")
    # The interval is read after each wake-up: a fresh publish is written within it.
    with override_settings(TASKCONSOLE_BUFFER_INTERVAL=0.05):
        buffer.flush()
        second = echo_task.delay(2)
        row = wait_for(lambda: TaskRecord.objects.filter(task_id=second.id).first(), timeout=30)
    assert (row.status, row.origin, row.args) == (TaskStatus.QUEUED, Origin.CODE, [2])
    assert len(rows(result.id)) == 1
    assert abs(rows(result.id)[0].created_at.timestamp() - published_at) < 0.001


@override_settings(TASKCONSOLE_BUFFER_INTERVAL=NEVER, TASKCONSOLE_BUFFER_SIZE=5)
def test_a_burst_writes_its_own_records_in_bulk(sent) -> None:
    ids = [echo_task.delay(i).id for i in range(12)]
    # Two full batches written by the publisher itself; two records still waiting.
    assert TaskRecord.objects.filter(task_id__in=ids).count() == 10
    assert buffer.pending() == 2
    assert buffer.flush() == 2
    assert (
        list(
            TaskRecord.objects.filter(task_id__in=ids)
            .order_by("id")
            .values_list("task_id", flat=True)
        )
        == ids
    )


@override_settings(TASKCONSOLE_BUFFER_INTERVAL=0)
def test_a_publisher_whose_thread_never_runs_writes_stale_records_itself(sent, monkeypatch):
    # A server that runs no threads: the daemon thread is started but never scheduled.
    monkeypatch.setattr(buffer, "_buffer", buffer.PublishBuffer())
    monkeypatch.setattr(buffer.PublishBuffer, "_start", lambda self: None)
    first = echo_task.delay(1)
    assert rows(first.id) == []
    later = time.monotonic() + buffer.STALE + 1
    monkeypatch.setattr(buffer, "clock", lambda: later)
    second = echo_task.delay(2)
    assert len(rows(first.id)) == len(rows(second.id)) == 1
    assert buffer.pending() == 0


@override_settings(TASKCONSOLE_BUFFER_INTERVAL=NEVER)
def test_a_late_flush_never_overwrites_what_the_worker_wrote(sent, make_user) -> None:
    user = make_user()
    with launched_by(Launcher(user.pk, Origin.USER)):
        result = echo_task.delay(3)
    # The worker ran the task first: task_prerun created the row, task_success finished it.
    done = TaskRecord.objects.create(
        task_id=result.id,
        name="tc_tests.echo",
        origin=Origin.USER,
        owner=user,
        status=TaskStatus.SUCCESS,
        result="3",
    )
    assert buffer.flush() == 1
    [row] = rows(result.id)
    assert (row.pk, row.status, row.result) == (done.pk, TaskStatus.SUCCESS, "3")


@override_settings(TASKCONSOLE_BUFFER_INTERVAL=NEVER)
def test_publishes_that_need_their_row_at_once_stay_synchronous(sent, make_user) -> None:
    user = make_user("launch", "view")
    # In a transaction: the row commits or rolls back with the caller's writes.
    with transaction.atomic():
        inside = echo_task.delay(1)
        assert len(rows(inside.id)) == 1
    rolled_back: list[str] = []

    def fails() -> None:
        with transaction.atomic():
            rolled_back.append(echo_task.delay(1).id)
            raise RuntimeError

    with pytest.raises(RuntimeError):
        fails()
    assert rows(rolled_back[0]) == []
    # A console launch inside a transaction: its record and its audit entry at once.
    with transaction.atomic():
        launched = actions.launch(user, "tc_tests.progress", {"steps": 1})
        assert rows(launched)[0].origin == Origin.CONSOLE
        assert AuditEntry.objects.filter(target=launched, action="launch").exists()
    # Turned off.
    with override_settings(TASKCONSOLE_BUFFER_PUBLISH=False):
        plain = echo_task.delay(1)
        assert len(rows(plain.id)) == 1
    assert buffer.pending() == 0
    assert all(stamped(m) is None for m in sent)


@pytest.mark.database
@override_settings(TASKCONSOLE_BUFFER_INTERVAL=NEVER)
def test_a_console_launch_buffers_its_record_and_audit_entry_together(sent, make_user) -> None:
    user = make_user("launch", "view")
    task_id = actions.launch(user, "tc_tests.progress", {"steps": 2})
    # Nothing written in the request: the record and the audit entry wait in the buffer.
    assert rows(task_id) == []
    assert not AuditEntry.objects.filter(target=task_id).exists()
    assert buffer.pending() == 2
    assert buffer.holds(task_id)
    [message] = sent
    assert stamped(message)[0] == Origin.CONSOLE
    assert message["headers"][capture.OWNER_HEADER] == user.pk
    # The task page asked for next finds it: this process's buffer is written first.
    record = queries.get_task(user, task_id)
    assert (record.origin, record.owner, record.kwargs) == (
        Origin.CONSOLE,
        user,
        {"steps": 2, "delay": 0.3},
    )
    assert buffer.pending() == 0
    entry = AuditEntry.objects.get(target=task_id)
    assert (entry.user, entry.action) == (user, "launch")
    assert entry.details["task"] == "tc_tests.progress"


@override_settings(TASKCONSOLE_BUFFER_INTERVAL=NEVER)
def test_a_launch_gives_celery_the_text_of_its_arguments(sent, make_user, monkeypatch) -> None:
    """Celery's saferepr of the arguments is not run for a launch: the console passes their
    text, built from the validated (and redacted) arguments."""
    from celery.app import amqp

    def no_saferepr(*args, **kwargs):
        raise AssertionError("saferepr was called")

    monkeypatch.setattr(amqp, "saferepr", no_saferepr)
    actions.launch(make_user("launch"), "app.tasks.add", {"x": 4, "y": 5})
    assert sent[0]["headers"]["kwargsrepr"] == "{'x': 4, 'y': 5}"
    assert sent[0]["headers"]["argsrepr"] == "()"


def test_a_launch_audits_its_arguments_redacted(sent, make_user) -> None:
    from pydantic import BaseModel

    from taskconsole import registry

    class EchoArgs(BaseModel):
        value: int = 0
        api_token: str = ""

    user = make_user("launch", "view")
    registry.register(echo_task, schema=EchoArgs, label="Echo")
    try:
        task_id = actions.launch(user, "tc_tests.echo", {"value": 3, "api_token": "s3cret"})
    finally:
        registry.unregister("tc_tests.echo")
    buffer.flush()
    entry = AuditEntry.objects.get(target=task_id)
    assert entry.details["kwargs"] == {"value": 3, "api_token": "********"}
    assert rows(task_id)[0].kwargs == {"value": 3, "api_token": "********"}
    # The message itself carries the real value: the task needs it. Its text form of the
    # arguments, which the worker's log and Flower show, does not.
    assert sent[0]["body"][1]["api_token"] == "s3cret"
    assert sent[0]["headers"]["kwargsrepr"] == "{'value': 3, 'api_token': '********'}"
    assert sent[0]["headers"]["argsrepr"] == "()"


@pytest.mark.database
@override_settings(TASKCONSOLE_BUFFER_INTERVAL=NEVER, TASKCONSOLE_BUFFER_SIZE=10_000)
def test_a_large_batch_and_its_audit_entries_are_written_together(sent, make_user) -> None:
    # Past COPY_FROM, so PostgreSQL copies the records inside the audit entries' transaction.
    user = make_user("launch", "view")
    ids = [echo_task.delay(i).id for i in range(buffer.COPY_FROM)]
    launched = actions.launch(user, "tc_tests.progress", {"steps": 1})
    assert buffer.flush() == buffer.COPY_FROM + 2
    assert TaskRecord.objects.filter(task_id__in=[*ids, launched]).count() == len(ids) + 1
    assert AuditEntry.objects.get(target=launched).user == user


@pytest.mark.database
def test_the_task_page_waits_for_another_process_buffer(make_user) -> None:
    user = make_user("view")
    task_id = str(uuid.uuid4())

    def other_process_writes() -> None:
        # What another web process's buffer thread does, a moment after the redirect.
        TaskRecord.objects.create(task_id=task_id, name="tc_tests.echo", owner=user)

    late = threading.Timer(0.05, other_process_writes)
    late.start()
    try:
        record = queries.get_task(user, task_id)
    finally:
        late.join()
    assert record is not None
    assert record.task_id == task_id
    # An id nobody published is still not found, after the wait.
    assert queries.get_task(user, str(uuid.uuid4())) is None


def test_the_wait_for_a_record_can_be_turned_off(make_user) -> None:
    user = make_user("view")
    task_id = str(uuid.uuid4())
    late = threading.Timer(
        0.5, lambda: TaskRecord.objects.create(task_id=task_id, name="tc_tests.echo", owner=user)
    )
    with override_settings(TASKCONSOLE_RECORD_WAIT=0):
        late.start()
        try:
            # Not waited for: the row comes after the answer.
            assert queries.get_task(user, task_id) is None
        finally:
            late.join()
    assert queries.get_task(user, task_id).task_id == task_id


def test_only_a_celery_task_id_outside_a_transaction_waits(make_user) -> None:
    user = make_user("view")
    connection = connections["default"]
    # An id Celery would not give (a typo, a probe): looked up again once this process's
    # buffer is settled (a task published with its own id may be in it), but not waited for.
    with CaptureQueriesContext(connection) as made_up:
        assert queries.get_task(user, "not-a-task-id") is None
    assert len([q for q in made_up if "taskconsole_taskrecord" in q["sql"]]) == 2
    # Inside a transaction another process's commit may not show: no waiting either.
    with transaction.atomic(), CaptureQueriesContext(connection) as inside:
        assert queries.get_task(user, str(uuid.uuid4())) is None
    assert len([q for q in inside if "taskconsole_taskrecord" in q["sql"]]) == 1


def _database_away(records, audits):
    raise OperationalError("could not connect to server")


@pytest.mark.database
@override_settings(TASKCONSOLE_BUFFER_INTERVAL=NEVER)
def test_audit_entries_wait_for_a_database_that_failed_a_write(sent, make_user, monkeypatch):
    user = make_user("launch", "view")
    real = buffer._write_together
    monkeypatch.setattr(buffer, "_write_together", _database_away)
    first = actions.launch(user, "tc_tests.progress", {"steps": 1})
    second = actions.launch(user, "tc_tests.progress", {"steps": 2})
    assert buffer.flush() == 0
    # The records are left to the workers (they rebuild them from the message); the audit
    # entries are kept, counted apart so that publishers do not write (and wait) for them.
    assert (buffer.pending(), buffer.kept()) == (0, 2)
    assert not buffer.holds(first)
    third = actions.launch(user, "tc_tests.progress", {"steps": 3})
    assert (buffer.pending(), buffer.kept()) == (2, 2)
    monkeypatch.setattr(buffer, "_write_together", real)
    assert buffer.flush() == 4
    assert buffer.kept() == 0
    # Written in the order of the launches, the kept ones first.
    assert list(
        AuditEntry.objects.filter(target__in=[first, second, third])
        .order_by("id")
        .values_list("target", flat=True)
    ) == [first, second, third]


@pytest.mark.database
@override_settings(TASKCONSOLE_BUFFER_INTERVAL=NEVER)
def test_a_batch_whose_commit_outcome_was_lost_is_not_written_twice(sent, make_user, monkeypatch):
    user = make_user("launch", "view")
    real = buffer._write_together
    lost = []

    def committed_then_lost(records, audits):
        # The COMMIT went through, but the connection dropped before its answer came back:
        # the buffer cannot tell this from a write that never happened, so it writes again.
        real(records, audits)
        if not lost:
            lost.append(len(audits))
            raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(buffer, "_write_together", committed_then_lost)
    first = actions.launch(user, "tc_tests.progress", {"steps": 1})
    second = actions.launch(user, "tc_tests.progress", {"steps": 2})
    buffer.flush()
    buffer.flush()  # the entries kept by the first flush, if it kept them
    assert lost == [2]
    assert buffer.kept() == 0
    stored = AuditEntry.objects.filter(target__in=[first, second])
    assert sorted(stored.values_list("target", flat=True)) == sorted([first, second])
    assert all(entry.key is not None for entry in stored)


@override_settings(TASKCONSOLE_BUFFER_INTERVAL=NEVER)
def test_a_read_only_database_keeps_the_audit_entries_too(sent, make_user, monkeypatch) -> None:
    # A PostgreSQL failover answers "read-only transaction" as an InternalError.
    user = make_user("launch", "view")

    def read_only(records, audits):
        raise InternalError("cannot execute INSERT in a read-only transaction")

    monkeypatch.setattr(buffer, "_write_together", read_only)
    actions.launch(user, "tc_tests.progress", {"steps": 1})
    assert buffer.flush() == 0
    assert buffer.kept() == 1
    monkeypatch.undo()
    assert buffer.flush() == 1


@override_settings(TASKCONSOLE_BUFFER_INTERVAL=NEVER)
def test_a_database_gone_while_a_refused_batch_is_written_keeps_its_entries(
    sent, make_user, monkeypatch
) -> None:
    user = make_user("launch", "view")

    def refused(records, audits):
        raise IntegrityError("FOREIGN KEY constraint failed")

    def away(entries, **_):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(buffer, "_write_together", refused)
    monkeypatch.setattr(buffer, "write", away)
    first = actions.launch(user, "tc_tests.progress", {"steps": 1})
    second = actions.launch(user, "tc_tests.progress", {"steps": 2})
    assert buffer.flush() == 0
    assert buffer.kept() == 2
    monkeypatch.undo()
    assert buffer.flush() == 2
    assert AuditEntry.objects.filter(target__in=[first, second]).count() == 2


@pytest.mark.database
def test_the_thread_writes_kept_audit_entries_once_the_database_is_back(
    sent, make_user, monkeypatch
):
    user = make_user("launch", "view")
    real = buffer._write_together
    failures = []

    def away_twice(records, audits):
        # Counted only for batches with the entry: the record may be written on its own first.
        if audits and len(failures) < 2:
            failures.append(len(audits))
            raise OperationalError("could not connect to server")
        real(records, audits)

    monkeypatch.setattr(buffer, "AUDIT_RETRY", 0.2)
    monkeypatch.setattr(buffer, "_write_together", away_twice)
    task_id = actions.launch(user, "tc_tests.progress", {"steps": 1})
    # No flush from here: the thread fails (once, and again on a fresh connection), keeps the
    # entry, and tries again on its own once AUDIT_RETRY has passed.
    entry = wait_for(lambda: AuditEntry.objects.filter(target=task_id).first(), timeout=30)
    assert entry.user == user
    assert failures == [1, 1]
    assert buffer.kept() == 0


@override_settings(TASKCONSOLE_BUFFER_INTERVAL=NEVER)
def test_audit_entries_past_the_backlog_go_to_the_log(sent, make_user, monkeypatch, caplog):
    user = make_user("launch", "view")
    monkeypatch.setattr(buffer, "_write_together", _database_away)
    monkeypatch.setattr(buffer, "AUDIT_BACKLOG", 1)
    kept = actions.launch(user, "tc_tests.progress", {"steps": 1})
    logged = actions.launch(user, "tc_tests.progress", {"steps": 2, "delay": 0.25})
    assert buffer.flush() == 0
    assert buffer.kept() == 1
    [lost] = [r.getMessage() for r in caplog.records if "audit entry lost" in r.getMessage()]
    assert logged in lost
    assert kept not in lost
    # Who did what and when, not the arguments: those stay in the database.
    assert "tc_tests.progress" in lost
    assert "delay" not in lost
    monkeypatch.undo()
    assert buffer.flush() == 1
    assert AuditEntry.objects.filter(target=kept).exists()


@pytest.mark.database
@override_settings(TASKCONSOLE_BUFFER_INTERVAL=NEVER)
def test_a_refused_batch_is_written_piece_by_piece(sent, make_user) -> None:
    user = make_user("launch", "view")
    task_id = actions.launch(user, "tc_tests.progress", {"steps": 1})
    other = echo_task.delay(1).id
    # The launcher is deleted before the flush: the record's owner and the entry's user no
    # longer exist. The batch is refused whole, then written row by row without them.
    user.delete()
    assert buffer.flush() == 3
    assert buffer.kept() == 0
    assert rows(task_id)[0].owner_id is None
    assert len(rows(other)) == 1
    entry = AuditEntry.objects.get(target=task_id)
    assert (entry.user, entry.action) == (None, "launch")


@pytest.mark.urls("taskconsole.tests.buffer_urls")
def test_a_task_published_by_a_view_is_recorded_by_the_thread(sent, make_user) -> None:
    user = make_user()
    client = Client()
    client.force_login(user)
    task_id = client.get("/tc-tests/publish/").content.decode()
    # No request, publish or flush after the view: the buffer's thread writes the row.
    row = wait_for(lambda: TaskRecord.objects.filter(task_id=task_id).first(), timeout=5)
    assert (row.origin, row.owner, row.args) == (Origin.WEB, user, [5])
    assert row.origin_detail == "/tc-tests/publish/"
    assert stamped(sent[0])[:2] == [Origin.WEB, "/tc-tests/publish/"]


def test_buffered_records_are_written_at_exit(subprocess_env) -> None:
    task_id = f"at-exit-{uuid.uuid4().hex}"
    script = f"""
import django
django.setup()
from django.test import override_settings
from kombu.messaging import Producer
from taskconsole import buffer
from taskconsole.tests.sample_tasks import echo_task
Producer.publish = lambda *args, **kwargs: None  # nothing leaves: only the record matters
override_settings(TASKCONSOLE_BUFFER_INTERVAL={NEVER}).enable()
echo_task.apply_async((9,), task_id="{task_id}")
assert buffer.pending() == 1
"""
    completed = subprocess.run(
        [sys.executable, "-c", script],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    [row] = rows(task_id)
    assert (row.name, row.args, row.status) == ("tc_tests.echo", [9], TaskStatus.QUEUED)


# With a real worker -------------------------------------------------------------------------

INCLUDE = ("-I", "taskconsole.tests.sample_tasks")


@pytest.fixture(scope="module")
def worker(start_module_worker):
    # A queue of its own: the module-scoped worker of test_integration consumes `default`.
    return start_module_worker(queues="tc_buffer", concurrency=1, name="tcbuf", extra_args=INCLUDE)


@pytest.mark.integration
@pytest.mark.parametrize("copy_from", [buffer.COPY_FROM, 1], ids=["insert", "copy"])
def test_the_worker_records_a_task_that_ran_before_the_flush(
    worker, make_user, monkeypatch, copy_from
):
    # "copy": the flush takes PostgreSQL's COPY path whatever its size.
    monkeypatch.setattr(buffer, "COPY_FROM", copy_from)
    user = make_user()
    held: list[dict] = []
    # The flush comes after the task ran, however fast the worker is.
    monkeypatch.setattr(buffer, "add", held.append)
    with launched_by(Launcher(user.pk, Origin.USER, "a view")):
        result = sleep_task.apply_async((0.1,), queue="tc_buffer")
    done = wait_for(
        lambda: TaskRecord.objects.filter(task_id=result.id, status=TaskStatus.SUCCESS).first(),
        timeout=60,
    )
    # Created by task_prerun from the headers the publisher stamped: nothing is missing.
    [published] = held
    assert (done.origin, done.owner, done.origin_detail) == (Origin.USER, user, "a view")
    assert (done.args, done.queue) == ([0.1], "tc_buffer")
    assert done.created_at == published["created_at"]
    assert done.finished_at >= done.started_at >= done.created_at
    buffer.write(held)
    [row] = rows(result.id)
    assert (row.pk, row.status, row.result) == (done.pk, TaskStatus.SUCCESS, "0.1")


#: Text COPY must carry as it is: its own separators and escapes, and non-ASCII text.
AWKWARD = "é\ttab\nline\\back \\N"


def record_template(user) -> dict:
    """The publish record of one task launched by `user`, as the buffer holds it."""
    with (
        override_settings(TASKCONSOLE_BUFFER_INTERVAL=NEVER),
        launched_by(Launcher(user.pk, Origin.USER, f"a view {AWKWARD}")),
    ):
        capture.on_before_publish(
            headers={"id": "template", "task": echo_task.name, "eta": None, "retries": 0},
            body=((1, {"k": [None, True, AWKWARD]}), {"api_token": "s3cret"}, {}),
            routing_key="default",
            exchange="",
        )
        [template] = buffer._buffer.take()
    return template


def records(template: dict, prefix: str, count: int = 600) -> list[dict]:
    return [
        {**template, "task_id": f"{prefix}-{i}", "root_id": f"{prefix}-{i}"} for i in range(count)
    ]


@pytest.mark.database
def test_a_large_flush_stores_what_a_small_one_does(make_user) -> None:
    # From COPY_FROM records on, PostgreSQL is given them with COPY: every column must come
    # out as the INSERT of a small flush stores it (JSON, times, flags, empty values).
    user = make_user()
    template = record_template(user)
    many = records(template, "many")
    assert len(many) >= buffer.COPY_FROM
    buffer.write([{**template, "task_id": "one", "root_id": "one"}])
    buffer.write(many)
    # A record already there (the worker created it) is kept as it is.
    buffer.write([*many[: buffer.COPY_FROM], {**template, "task_id": "one", "status": "SUCCESS"}])
    # Records of tasks not sent yet (taskconsole.bulk): straight into the table.
    buffer.write(records(template, "new"), new=True)
    per_task = {"id", "task_id", "root_id"}

    def stored(task_id: str) -> dict:
        values = TaskRecord.objects.filter(task_id=task_id).values().get()
        return {key: value for key, value in values.items() if key not in per_task}

    one = stored("one")
    assert one["args"] == [1, {"k": [None, True, AWKWARD]}]
    assert one["kwargs"] == {"api_token": "********"}
    assert one["origin_detail"] == f"a view {AWKWARD}"
    assert (one["redacted"], one["owner_id"], one["status"]) == (True, user.pk, "QUEUED")
    assert TaskRecord.objects.filter(task_id__startswith="many-").count() == 600
    assert TaskRecord.objects.filter(task_id__startswith="new-").count() == 600
    assert all(stored(f"{kind}-{i}") == one for kind in ("many", "new") for i in (0, 599))


@pytest.mark.database
def test_a_copy_in_parts_stores_every_row_as_given(make_user, monkeypatch) -> None:
    # PostgreSQL's COPY is written COPY_PART rows at a time, and a value shared by consecutive
    # rows is rendered once: here the runs of shared values cross the parts' edges.
    monkeypatch.setattr(buffer, "COPY_PART", 7)
    template = record_template(make_user())
    shared = [[n, AWKWARD] for n in range(120)]
    many = [
        {**entry, "args": shared[i // 5], "retries": i % 3}
        for i, entry in enumerate(records(template, "part"))
    ]
    buffer.write(many, new=True)
    stored = TaskRecord.objects.filter(task_id__startswith="part-").values_list(
        "task_id", "args", "retries", "origin_detail"
    )
    assert sorted(stored) == sorted(
        (f"part-{i}", [i // 5, AWKWARD], i % 3, template["origin_detail"]) for i in range(600)
    )


@pytest.mark.database
def test_large_flushes_in_a_callers_transaction_commit_with_it(make_user) -> None:
    # enqueue_many inside transaction.atomic() may flush the buffer twice in the caller's
    # transaction: both batches and the caller's own write land together.
    template = record_template(make_user())
    with transaction.atomic():
        caller = make_user()
        for prefix in ("first", "second"):
            buffer.add_many(records(template, prefix))
            assert buffer.flush() == 600
    assert TaskRecord.objects.filter(task_id__startswith="first-").count() == 600
    assert TaskRecord.objects.filter(task_id__startswith="second-").count() == 600
    assert type(caller).objects.filter(pk=caller.pk).exists()


@pytest.mark.database
def test_a_failed_flush_in_a_callers_transaction_leaves_it_alone(make_user, monkeypatch) -> None:
    # Outside a transaction a failed write is retried on a fresh connection; inside one,
    # closing the connection would lose the caller's writes, so the records are given up
    # (a worker records each task it runs from its message).
    template = record_template(make_user())

    def fails(entries, **_):
        raise RuntimeError("the database refused the batch")

    monkeypatch.setattr(buffer, "write", fails)
    with transaction.atomic():
        caller = make_user()
        buffer.add_many(records(template, "lost", 3))
        assert buffer.flush() == 0
    assert type(caller).objects.filter(pk=caller.pk).exists()


def test_text_columns_pass_strings_as_they_are_and_other_fields_prepare_them() -> None:
    from django.db import models

    class Upper(models.CharField):
        def get_prep_value(self, value):
            return super().get_prep_value(value).upper()

    field = Upper(max_length=10)
    field.set_attributes_from_name("task_id")
    connection = connections["default"]
    entries = [{"task_id": f"id-{i}"} for i in range(3)]
    assert buffer._keeps_text(TaskRecord._meta.get_field("task_id"))
    assert not buffer._keeps_text(field)
    assert not buffer._keeps_text(TaskRecord._meta.get_field("created_at"))
    plain = buffer._columns(entries, [TaskRecord._meta.get_field("task_id")], connection, 100)
    assert plain == [["id-0", "id-1", "id-2"]]
    assert buffer._columns(entries, [field], connection, 100) == [["ID-0", "ID-1", "ID-2"]]
