"""A worker holding messages it took but has not run yet, when Redis goes away and comes back.

kombu's Redis channel restores those messages when its connection closes; with the connection
already gone it raised AttributeError from inside that restore, which killed the worker
("Unrecoverable error") instead of letting it reconnect. Real worker, real redis-server.
"""

from __future__ import annotations

import signal

import pytest

from operations import embedded_redis
from operations.testing import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_worker_with_a_backlog_survives_redis_going_away_and_reconnects(
    start_worker, tmp_path
) -> None:
    from app.tasks import add, nap
    from myproject.celery import app as celery_app

    port = embedded_redis.free_port()
    url = f"redis://127.0.0.1:{port}/0"
    redis = embedded_redis.start(port, tmp_path / "redis")
    try:
        worker = start_worker(
            queues="default", concurrency=1, name="outage", extra_env={"CELERY_BROKER_URL": url}
        )
        with celery_app.connection_for_write(url) as connection:
            for _ in range(4):
                nap.apply_async((3,), connection=connection)
        # One runs; the worker has taken the others off the queue and holds them.
        worker.wait_for_output("nap", timeout=30)
        wait_for(lambda: worker.output.count("] received") >= 3, timeout=30)

        redis.send_signal(signal.SIGKILL)
        redis.wait(timeout=10)
        worker.wait_for_output("Connection to broker lost", timeout=30)
        wait_for(lambda: "Cannot connect to" in worker.output or "Trying again" in worker.output)
        assert worker.process.poll() is None, worker.output[-3000:]
        assert "Unrecoverable error" not in worker.output
        # What it held waits in Redis's index of taken messages, not in this process.
        assert "they return to it after the visibility timeout" in worker.output

        redis = embedded_redis.start(port, tmp_path / "redis")
        connected = worker.output.count("Connected to redis")
        wait_for(lambda: worker.output.count("Connected to redis") > connected, timeout=60)
        with celery_app.connection_for_write(url) as connection:
            after = add.apply_async((20, 22), connection=connection)
        worker.wait_for_output(f"Task app.tasks.add[{after.id}] succeeded", timeout=60)
        assert worker.process.poll() is None
        # A reconnection is a few lines, not tracebacks and Celery's nine-line warning about a
        # setting the project chose (myproject/celery.py).
        assert "Traceback" not in worker.output
        assert "CPendingDeprecationWarning" not in worker.output
    finally:
        redis.kill()
        redis.wait(timeout=10)
