"""A worker that consumes only `default` never takes a file batch task (issue 3, part 4)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from amqp.exceptions import ChannelError
from celery.result import AsyncResult

from app.tasks import ping
from imports.models import ImportBatch, ImportFile
from myproject.celery import app as celery_app
from operations.testing import wait_for

from .factories import csv_file, image_bytes, image_file, make_batch, product_csv

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def queue_length(name: str) -> int:
    with celery_app.connection_for_write() as conn:
        try:
            return conn.default_channel.queue_declare(queue=name, passive=True).message_count
        except ChannelError:  # Redis drops an empty list: no queue left means no message.
            return 0


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("imports-routing-media")


@pytest.fixture
def empty_queues_after() -> Iterator[None]:
    yield
    # The messages left on heavy_tasks must not reach a heavy worker of a later module.
    celery_app.control.purge()


def test_a_default_worker_leaves_imports_on_heavy_tasks(celery_worker, empty_queues_after):
    before = queue_length("heavy_tasks")
    batch = make_batch(
        csv_file("products.csv", product_csv(10).content), image_file("a.png", image_bytes())
    )
    files = list(batch.files.all())
    wait_for(lambda: queue_length("heavy_tasks") == before + 2, timeout=30)

    # The default worker is alive and working: a sentinel task on `default` completes...
    assert ping.delay().get(timeout=60) == "pong"

    # ...while the imports have not moved: still on heavy_tasks, never started.
    assert queue_length("heavy_tasks") == before + 2
    for import_file in files:
        assert AsyncResult(import_file.task_id).state == "PENDING"
        import_file.refresh_from_db()
        assert import_file.status == ImportFile.Status.QUEUED
        assert import_file.task_id not in celery_worker.output
    batch.refresh_from_db()
    assert batch.status == ImportBatch.Status.QUEUED
