"""A broker that is down: a clear 503 within seconds, nothing half-written."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator

import pytest

from operations.embedded_redis import free_port
from operations.testing import ManagedProcess, run_script
from taskconsole.models import TaskRecord, TaskStatus

# Runs in a fresh interpreter, so the settings read the broken CELERY_BROKER_URL as a real
# deployment would, and no connection pooled by this test session is reused.
SCRIPT = """
import json, sys, time
import django
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
client = Client()
if sys.argv[1:] == ["--logged-in"]:
    client.cookies["sessionid"] = "s" * 32  # a logged-in browser: its session is in the database
started = time.monotonic()
response = client.get("/test/")
print(json.dumps({
    "status": response.status_code,
    "retry_after": response.get("Retry-After"),
    "body": response.content.decode(),
    "seconds": time.monotonic() - started,
}))
"""


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_test_view_answers_503_when_the_broker_is_down(subprocess_env) -> None:
    env = {**subprocess_env, "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    # The timeout guards against a hang: the view must answer, not wait on the broker forever.
    answer = run_script(SCRIPT, env, timeout=30)
    assert answer["status"] == 503
    assert answer["retry_after"] == "30"
    assert "The task queue is unavailable" in answer["body"]
    assert "may have been saved without it" in answer["body"]
    assert answer["seconds"] < 10
    # The console's record of the task that was not sent is failed, not left queued for ever
    # (where the readiness check's queue age would count it).
    [(status, exception)] = TaskRecord.objects.filter(name="app.tasks.add").values_list(
        "status", "exception"
    )
    assert status == TaskStatus.FAILURE
    assert exception.startswith("Not published: ")


@pytest.mark.integration
def test_the_503_stands_when_the_database_is_gone_too(subprocess_env, tmp_path) -> None:
    env = {
        **subprocess_env,
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'no-such-directory' / 'db.sqlite3'}",
    }
    answer = run_script(SCRIPT, env, "--logged-in", timeout=30)
    # The page's header cannot read the user: a plain answer instead of a 500.
    assert answer["status"] == 503
    assert answer["retry_after"] == "30"
    assert "The task queue is unavailable" in answer["body"]


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """A broker that accepts connections and never answers: a stopped or stuck Redis."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    # Never accepted: the kernel completes the handshakes and keeps what is sent, as it does
    # for a process that is stopped.
    server.listen(64)
    try:
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    finally:
        server.close()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_broker_that_never_answers_gets_a_503_not_a_hung_request(
    subprocess_env, silent_broker
) -> None:
    env = {**subprocess_env, "CELERY_BROKER_URL": silent_broker}
    answer = run_script(SCRIPT, env, timeout=60)
    assert answer["status"] == 503
    assert answer["retry_after"] == "30"
    assert "The task queue is unavailable" in answer["body"]
    # It may be queued after all: the page does not say it was not.
    assert "it may still run once the broker answers again" in answer["body"]
    assert "was not queued" not in answer["body"]
    # Each try waits for the socket timeout (3 s), and a publish is tried three times.
    assert answer["seconds"] < 20, answer["seconds"]
    # The console's record waits for the worker, if the message reached the broker.
    [status] = TaskRecord.objects.filter(name="app.tasks.add").values_list("status", flat=True)
    assert status == TaskStatus.QUEUED


@pytest.mark.integration
def test_a_worker_keeps_trying_a_broker_that_is_away(subprocess_env) -> None:
    env = {**subprocess_env, "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    argv = [sys.executable, "-m", "celery", "-A", "myproject", "worker", "-l", "info", "-P"]
    worker = ManagedProcess([*argv, "solo", "-n", "away@%h"], env, name="away")
    try:
        worker.wait_for_output("(attempt 2; no limit)", timeout=60)
        assert worker.process.poll() is None
        assert "/None)" not in worker.output
    finally:
        worker.stop()
