"""Messages a worker refuses (unknown task name, pickle) are logged without their secrets.

Celery's consumer logs the full body of such a message, arguments included; the project's
(myproject/consumer.py) logs the task's name, id and the reason, the arguments redacted, and
the console's record of the task ends FAILURE instead of staying QUEUED.
"""

from __future__ import annotations

import logging
import pickle
import uuid
from types import SimpleNamespace

import pytest
from django_celery_results.models import TaskResult
from kombu import Connection, Exchange, Queue
from kombu.message import Message

from myproject import consumer
from myproject.celery import app as celery_app
from operations.testing import wait_for
from taskconsole import buffer
from taskconsole.models import TaskRecord, TaskStatus

QUEUE = "refused_tests"


def _failed_record(task_id: str) -> TaskRecord | None:
    return TaskRecord.objects.filter(task_id=task_id, status=TaskStatus.FAILURE).first()


@pytest.fixture(scope="module")
def worker(start_module_worker):
    return start_module_worker(queues=QUEUE, concurrency=1, name="refused")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_unregistered_task_is_logged_without_its_secrets_and_ends_failure(worker) -> None:
    secrets = ("LOGLEAK-PW", "LOGLEAK-AK")
    result = celery_app.send_task(
        "app.tasks.addd",
        kwargs={"x": 1, "password": secrets[0], "api_key": secrets[1]},
        queue=QUEUE,
    )
    worker.wait_for_output(
        f"Received unregistered task of type 'app.tasks.addd' (id {result.id})", timeout=30
    )
    # Celery's other behaviour is kept: the result is FAILURE with NotRegistered.
    stored = wait_for(
        lambda: TaskResult.objects.filter(task_id=result.id, status="FAILURE").first(), timeout=30
    )
    assert "NotRegistered" in stored.result
    # The console's record ends FAILURE too, whichever of the publisher's buffer and the worker
    # wrote it first; a late flush of the buffer does not bring back QUEUED.
    record = wait_for(lambda: _failed_record(result.id), timeout=30)
    assert record.exception == "NotRegistered('app.tasks.addd')"
    assert record.finished_at is not None
    buffer.flush()
    record.refresh_from_db()
    assert record.status == TaskStatus.FAILURE
    assert record.name == "app.tasks.addd"
    assert record.kwargs == {"x": 1, "password": "********", "api_key": "********"}

    output = worker.output
    for secret in secrets:
        assert secret not in output
    # What an operator needs is there: the arguments, redacted, and the queue.
    assert '{"x": 1, "password": "********", "api_key": "********"}' in output
    assert f"'routing_key': '{QUEUE}'" in output
    assert output.count("Received unregistered task of type 'app.tasks.addd'") == 1


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_pickle_message_is_refused_and_logged_without_its_secret(worker) -> None:
    secret = "PICKLE-LEAK-PW"
    task_id = str(uuid.uuid4())
    queue = Queue(QUEUE, Exchange(QUEUE), routing_key=QUEUE)
    with Connection(celery_app.conf.broker_url) as conn:
        conn.Producer().publish(
            pickle.dumps(((), {"x": 1, "password": secret}, {})),
            exchange=queue.exchange,
            routing_key=QUEUE,
            declare=[queue],
            content_type="application/x-python-serialize",
            content_encoding="binary",
            headers={"task": "app.tasks.add", "id": task_id, "lang": "py"},
        )
    worker.wait_for_output(f"(task 'app.tasks.add', id {task_id})", timeout=30)
    output = worker.output
    assert "Refusing to deserialize untrusted content of type pickle" in output
    assert secret not in output
    assert "(not shown: " in output
    assert f"Task app.tasks.add[{task_id}] succeeded" not in output
    # The console knows of it as a failure, without arguments (the body was never loaded).
    record = wait_for(lambda: _failed_record(task_id), timeout=30)
    assert record.exception.startswith("ContentDisallowed: Refusing to deserialize")
    assert record.kwargs == {}


# The handlers on their own, with messages made here (no worker).


class Recorder:
    def __init__(self) -> None:
        self.failures: list[tuple[str, Exception]] = []

    def mark_as_failure(self, task_id: str, exc: Exception, request=None) -> None:
        self.failures.append((task_id, exc))


def _consumer() -> tuple[consumer.Consumer, Recorder]:
    backend = Recorder()
    made = consumer.Consumer.__new__(consumer.Consumer)
    made.app = SimpleNamespace(backend=backend)
    made.connection_errors = ()
    made.event_dispatcher = None
    return made, backend


def _message(body: bytes, content_type: str, headers: dict | None) -> Message:
    message = Message(
        body=body,
        content_type=content_type,
        content_encoding="utf-8" if content_type == "application/json" else "binary",
        delivery_info={"exchange": "q", "routing_key": "q"},
        headers=headers,
        accept=["application/json"],
    )
    message.reject_log_error = lambda *a, **k: None
    message.ack = lambda *a, **k: None
    return message


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(record.getMessage() for record in caplog.records)


def test_unknown_task_handler_marks_failure_and_logs_redacted_arguments(caplog) -> None:
    made, backend = _consumer()
    body = b'[[], {"x": 1, "token": "TOK-1", "nested": {"secret": "SEC-2"}}, {}]'
    headers = {"task": "nope", "id": "id-1", "kwargsrepr": "{'token': 'TOK-1'}"}
    with caplog.at_level(logging.ERROR):
        made.on_unknown_task(None, _message(body, "application/json", headers), KeyError("nope"))
    text = _logged(caplog)
    assert "Received unregistered task of type 'nope' (id id-1)" in text
    assert "TOK-1" not in text
    assert "SEC-2" not in text
    assert '"token": "********"' in text
    assert "not shown: kwargsrepr" in text
    [(task_id, exc)] = backend.failures
    assert task_id == "id-1"
    assert type(exc).__name__ == "NotRegistered"


def test_undecodable_and_foreign_messages_are_described_not_dumped(caplog) -> None:
    made, _ = _consumer()
    pickled = pickle.dumps({"password": "PKL-3"})
    with caplog.at_level(logging.WARNING):
        made.on_decode_error(
            _message(pickled, "application/x-python-serialize", None),
            ValueError("cannot decode"),
        )
        made.on_unknown_message(
            {"api_key": "AK-4"}, _message(b'{"api_key": "AK-4"}', "application/json", None)
        )
    text = _logged(caplog)
    assert "Can't decode message body: ValueError: cannot decode" in text
    assert "Received and deleted unknown message" in text
    assert "PKL-3" not in text
    assert "AK-4" not in text
