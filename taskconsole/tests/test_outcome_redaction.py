"""A task's outcome — its result, exception and traceback — keeps no secret anywhere it goes.

The console's record, django-celery-results' row (and so AsyncResult), the worker's log lines
of the outcome, its task events (Flower) and the periodic tasks API: each is driven here as
the worker drives it, without a worker (test_redaction_worker.py runs a real one).
"""

from __future__ import annotations

import io
import json
import logging
import sys
import uuid
from types import SimpleNamespace

import pytest
from celery import states
from celery.app.trace import LOG_FAILURE, LOG_SUCCESS
from celery.result import AsyncResult
from django.test import Client
from django_celery_beat.models import CrontabSchedule, PeriodicTask
from django_celery_results.models import TaskResult
from kombu.message import Message

from myproject import consumer
from myproject.celery import app as celery_app
from reliability.results import redact_outcome
from taskconsole import capture, worker_redaction
from taskconsole.models import ApiToken, TaskRecord, TaskStatus

from .sample_tasks import echo_task, fail_task

URL = "postgres://u:PW-URL@db.example/x"
HIDDEN_URL = "postgres://u:********@db.example/x"


def _raised(exc: BaseException):
    try:
        raise exc
    except BaseException:
        return sys.exc_info()


# The console's record.


@pytest.mark.django_db
def test_the_console_record_stores_a_result_without_its_secrets() -> None:
    task_id = str(uuid.uuid4())
    TaskRecord.objects.create(task_id=task_id, name=echo_task.name)
    echo_task.push_request(id=task_id, is_eager=False)
    try:
        capture.on_success(sender=echo_task, result={"url": URL, "token": "TOK-1", "n": 1})
    finally:
        echo_task.pop_request()
    record = TaskRecord.objects.get(task_id=task_id)
    assert record.status == TaskStatus.SUCCESS
    assert json.loads(record.result) == {"url": HIDDEN_URL, "token": "********", "n": 1}


@pytest.mark.django_db
def test_the_console_record_stores_an_exception_and_traceback_without_their_secrets() -> None:
    task_id = str(uuid.uuid4())
    TaskRecord.objects.create(task_id=task_id, name=fail_task.name)
    exc = ValueError(f"Field 'id' expected a number but got '{URL}' (password=PW-2)")
    einfo = SimpleNamespace(traceback=f"Traceback (most recent call last):\nValueError: {exc}")
    capture.on_failure(sender=fail_task, task_id=task_id, exception=exc, einfo=einfo)
    record = TaskRecord.objects.get(task_id=task_id)
    assert record.status == TaskStatus.FAILURE
    assert record.exception == (
        f"ValueError: Field 'id' expected a number but got '{HIDDEN_URL}' (password=********)"
    )
    assert "PW-" not in record.traceback
    assert HIDDEN_URL in record.traceback


# django-celery-results' row, through the product's backend.


@pytest.mark.django_db
def test_the_result_backend_stores_a_success_without_its_secrets() -> None:
    task_id = str(uuid.uuid4())
    celery_app.backend.store_result(task_id, URL, states.SUCCESS)
    row = TaskResult.objects.get(task_id=task_id)
    assert "PW-URL" not in row.result
    assert AsyncResult(task_id, app=celery_app).result == HIDDEN_URL


@pytest.mark.django_db
def test_the_result_backend_stores_a_failure_without_its_secrets() -> None:
    task_id = str(uuid.uuid4())
    exc = ValueError(f"got '{URL}'", "api_key=AK-3")
    request = SimpleNamespace(
        id=task_id,
        task=fail_task.name,
        argsrepr="()",
        kwargsrepr="{}",
        hostname="w@h",
        children=[],
        ignore_result=False,
        group=None,
        parent_id=None,
        delivery_info={},
        errbacks=None,
        chord=None,
    )
    celery_app.backend.mark_as_failure(
        task_id,
        exc,
        traceback=f"Traceback …\nValueError: got '{URL}' api_key=AK-3",
        request=request,
        call_errbacks=False,
    )
    row = TaskResult.objects.get(task_id=task_id)
    assert row.status == states.FAILURE
    assert "PW-URL" not in f"{row.result} {row.traceback}"
    assert "AK-3" not in f"{row.result} {row.traceback}"
    stored = AsyncResult(task_id, app=celery_app)
    assert isinstance(stored.result, ValueError)
    assert stored.result.args == (f"got '{HIDDEN_URL}'", "api_key=********")
    assert stored.traceback.endswith(f"got '{HIDDEN_URL}' api_key=********")


def test_the_backend_leaves_what_holds_no_secret_as_it_is() -> None:
    plain = {"exc_type": "ValueError", "exc_message": ("no such row",), "exc_module": "builtins"}
    assert redact_outcome(plain, states.FAILURE, "Traceback") == (plain, "Traceback")
    for value in (None, 7, "done", [1, 2]):
        assert redact_outcome(value, states.SUCCESS, None)[0] is value
    # STARTED's result is Celery's (the worker's pid and name): not looked at.
    started = {"pid": 1, "hostname": "token=x"}
    assert redact_outcome(started, states.STARTED, None)[0] is started
    # A pickled exception (pickle result serializer) is stored as a redacted copy.
    exc = ValueError("password=PW-4")
    stored, _ = redact_outcome(exc, states.FAILURE, None)
    assert stored.args == ("password=********",)
    assert exc.args == ("password=PW-4",)


# The worker's log lines of a task's outcome.


@pytest.fixture
def trace_log():
    """What Celery's task-trace logger prints, through a plain handler, with the filter on."""
    worker_redaction.install()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("celery.app.trace")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def test_celery_success_and_failure_lines_are_logged_without_secrets(trace_log) -> None:
    logger, stream = trace_log
    assert sum(isinstance(f, worker_redaction.RedactSecrets) for f in logger.filters) == 1
    success = {"id": "t1", "name": "echo", "return_value": repr(URL), "runtime": 0.1}
    logger.info(LOG_SUCCESS, success, extra={"data": success})
    exc_info = _raised(ValueError(f"got '{URL}' with token: TOK-5"))
    failure = {
        "id": "t2",
        "name": "fail",
        "description": "raised unexpected",
        "exc": repr(exc_info[1]),
        "traceback": "…",
    }
    records: list[logging.LogRecord] = []

    def keep(record: logging.LogRecord) -> bool:
        records.append(record)
        return True

    logger.addFilter(keep)  # after the redaction filter: sees what handlers get
    try:
        logger.error(LOG_FAILURE, failure, exc_info=exc_info, extra={"data": failure})
    finally:
        logger.removeFilter(keep)
    text = stream.getvalue()
    assert f"Task echo[t1] succeeded in 0.1s: '{HIDDEN_URL}'" in text
    assert f"Task fail[t2] raised unexpected: ValueError(\"got '{HIDDEN_URL}'" in text
    assert "Traceback (most recent call last)" in text
    assert "token: ********" in text
    assert "PW-URL" not in text
    assert "TOK-5" not in text
    # Celery hands its context to custom handlers as `data` too.
    assert "PW-URL" not in str(records[0].data)


def test_other_log_lines_are_redacted_as_their_message() -> None:
    record = logging.LogRecord(
        "celery.worker.request", logging.ERROR, "", 1, "raised: %r", None, None
    )
    record.args = (ValueError("password=PW-6"),)
    worker_redaction.RedactSecrets().filter(record)
    assert record.getMessage() == "raised: ValueError('password=********')"
    plain = logging.LogRecord("x", logging.INFO, "", 1, "Task %s received", ("t1",), None)
    worker_redaction.RedactSecrets().filter(plain)
    assert (plain.msg, plain.args) == ("Task %s received", ("t1",))


# Task events (Flower).


class Dispatcher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def send(self, type, blind=False, **fields):
        self.sent.append((type, fields))


def test_task_events_leave_the_worker_without_secrets() -> None:
    made = consumer.Consumer.__new__(consumer.Consumer)
    made.event_dispatcher = None
    assert made.event_dispatcher is None
    # Celery's Events bootstep sets the consumer's dispatcher (again on every reconnection).
    dispatcher = Dispatcher()
    made.event_dispatcher = dispatcher
    assert made.event_dispatcher is dispatcher
    send = made.event_dispatcher.send
    send("task-succeeded", result=repr(URL), runtime=0.1)
    send(
        "task-failed",
        exception="ValueError('password=PW-7')",
        traceback="Traceback …\nValueError: password=PW-7",
    )
    send("task-retried", exception="RuntimeError('token: TOK-8')", traceback="")
    send("task-received", args="('password=kept-by-argsrepr',)")
    assert dispatcher.sent == [
        ("task-succeeded", {"result": repr(HIDDEN_URL), "runtime": 0.1}),
        (
            "task-failed",
            {
                "exception": "ValueError('password=********')",
                "traceback": "Traceback …\nValueError: password=********",
            },
        ),
        ("task-retried", {"exception": "RuntimeError('token: ********')", "traceback": ""}),
        # Arguments are the publisher's argsrepr, redacted when published: not looked at.
        ("task-received", {"args": "('password=kept-by-argsrepr',)"}),
    ]
    # Wrapped once, however often it is set.
    made.event_dispatcher = dispatcher
    assert dispatcher.send is send


# The periodic tasks API.


@pytest.mark.django_db
def test_periodic_task_arguments_are_redacted_in_the_api(make_user) -> None:
    PeriodicTask.objects.create(
        name="nightly-report",
        task="app.tasks.log_event",
        args=json.dumps(["postgres://u:PW-PARG-9@db/x", "host=db password=PW-10"]),
        kwargs=json.dumps({"api_key": "PW-PERIODIC-8", "n": 1}),
        crontab=CrontabSchedule.objects.create(minute="0", hour="3"),
    )
    _, key = ApiToken.issue(make_user("view"))
    response = Client().get("/console/api/periodic/", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 200
    assert "PW-" not in response.content.decode()
    [row] = response.json()["results"]
    assert row["args"] == ["postgres://u:********@db/x", "host=db password=********"]
    assert row["kwargs"] == {"api_key": "********", "n": 1}
    assert row["redacted"] is True


# The worker's log of a message it refuses (myproject/consumer.py).


def test_a_refused_message_is_logged_without_key_value_secrets_in_its_arguments(caplog) -> None:
    made = consumer.Consumer.__new__(consumer.Consumer)
    made.app = SimpleNamespace(backend=SimpleNamespace(mark_as_failure=lambda *a, **k: None))
    made.connection_errors = ()
    made.event_dispatcher = None
    body = json.dumps(
        [["db host=x password=PW-UNK-12", "postgres://u:PW-UNK-13@h/x"], {"token": "T"}, {}]
    )
    message = Message(
        body=body.encode(),
        content_type="application/json",
        content_encoding="utf-8",
        delivery_info={"exchange": "q", "routing_key": "q"},
        headers={"task": "no.such.task", "id": "id-12"},
        accept=["application/json"],
    )
    message.reject_log_error = lambda *a, **k: None
    with caplog.at_level(logging.ERROR):
        made.on_unknown_task(None, message, KeyError("no.such.task"))
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "Received unregistered task of type 'no.such.task' (id id-12)" in text
    assert "db host=x password=********" in text
    assert "PW-UNK" not in text
