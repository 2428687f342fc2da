"""The outbox behind the product's dispatch on commit, with a real broker and worker: what the
broker refused, or took and then lost (a Redis restart without persistence), is sent again by
the sweeper and runs once."""

from __future__ import annotations

import uuid
from unittest import mock

import pytest
from django.db import transaction
from django.test import Client
from kombu.exceptions import OperationalError

from articles.models import Article, ExpansionStatus
from articles.tasks import expand_abbreviations
from articles.tests.factories import make_abbreviation, make_user
from imports.models import ImportFile
from imports.tasks import process_import_file
from imports.tests.factories import csv_file, make_batch, product_csv
from myproject.celery import app
from operations.testing import wait_for
from reliability import outbox
from reliability.delivery import IdempotentTask
from reliability.ledger import ledger_at_most_once, ledger_idempotent
from reliability.models import Delivery, LedgerEntry, OutboxMessage, OutboxStatus
from taskconsole.vanished import queue_state

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LOST_QUEUE = f"outbox-lost-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def worker(start_module_worker):
    return start_module_worker(queues="default", concurrency=1, name="outbox-views")


def test_the_article_task_is_idempotent_so_a_resent_copy_is_harmless() -> None:
    assert isinstance(expand_abbreviations, IdempotentTask)
    assert outbox.records_start(expand_abbreviations)


def test_an_article_saved_while_the_broker_refuses_is_expanded_after_the_sweep(
    worker, client: Client
) -> None:
    make_abbreviation()
    client.force_login(make_user("articles.add_article"))
    down = OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    with mock.patch.object(expand_abbreviations, "apply_async", side_effect=down):
        response = client.post("/articles/new/", {"title": "Kept", "body": "MyCorp ships."})
    # The request answers at once: saved, with a warning, not an error page.
    assert response.status_code == 302
    article = Article.objects.get()
    assert article.expansion_status == ExpansionStatus.NOT_QUEUED
    message = OutboxMessage.objects.get(task_name=expand_abbreviations.name)
    assert message.status == OutboxStatus.PENDING
    assert message.args == [article.pk]
    assert "Connection refused" in message.last_error

    # The broker is back: the periodic sweeper sends it, the worker expands the article.
    assert outbox.sweep(older_than=0) == 1
    expanded = wait_for(
        lambda: Article.objects.filter(
            pk=article.pk, expansion_status=ExpansionStatus.EXPANDED
        ).first(),
        timeout=60,
    )
    assert expanded.body == "My Corporation ships."
    message.refresh_from_db()
    assert message.status == OutboxStatus.SENT
    # Started, so the arguments kept for a re-send are dropped.
    wait_for(lambda: OutboxMessage.objects.filter(pk=message.pk, args=[]).exists(), timeout=30)


def test_an_upload_stored_while_the_broker_refuses_is_processed_after_the_sweep(
    start_worker, settings, tmp_path
) -> None:
    settings.MEDIA_ROOT = str(tmp_path)
    down = OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    with mock.patch.object(process_import_file, "apply_async", side_effect=down):
        batch = make_batch(csv_file("products.csv", product_csv(3, with_bad_rows=False).content))
    import_file = batch.files.get()
    # Waiting for the queue, not failed: the outbox sends it once the broker is back.
    assert import_file.status == ImportFile.Status.NOT_QUEUED
    assert import_file.error == ""
    message = OutboxMessage.objects.get(task_id=import_file.task_id)
    assert message.status == OutboxStatus.PENDING

    start_worker(
        queues="heavy_tasks",
        concurrency=1,
        name="outbox-imports",
        extra_env={"DJANGO_MEDIA_ROOT": str(tmp_path)},
    )
    assert outbox.sweep(older_than=0) == 1
    done = wait_for(
        lambda: ImportFile.objects.filter(pk=import_file.pk, status=ImportFile.Status.DONE).first(),
        timeout=60,
    )
    assert done.error == ""
    assert Delivery.objects.get(task_id=import_file.task_id).count == 1


def purge(queue: str) -> int:
    with app.connection_for_write() as conn:
        return conn.default_channel.queue_purge(queue) or 0


def test_a_message_the_broker_lost_is_sent_again_and_runs_once(start_worker, settings) -> None:
    settings.RELIABILITY_OUTBOX_CONFIRM_SECONDS = 0
    run = uuid.uuid4().hex
    with transaction.atomic():
        task_id = outbox.dispatch_with_options(ledger_at_most_once, (run,), queue=LOST_QUEUE)
    assert OutboxMessage.objects.get(task_id=task_id).status == OutboxStatus.SENT
    # Still in its queue, waiting for a worker: not lost, so not sent again.
    assert outbox.resend_lost() == 0

    # The broker loses it (what a Redis restart without persistence does to its queues).
    assert purge(LOST_QUEUE) == 1
    assert outbox.resend_lost() == 1
    message = OutboxMessage.objects.get(task_id=task_id)
    assert (message.status, message.args) == (OutboxStatus.SENT, [run])

    start_worker(queues=LOST_QUEUE, concurrency=1, name="outbox-lost")
    wait_for(lambda: LedgerEntry.objects.filter(run=run, done=True).exists(), timeout=60)
    # Started: never sent again, and its arguments are no longer kept.
    assert Delivery.objects.filter(task_id=task_id).exists()
    assert outbox.resend_lost() == 0
    assert OutboxMessage.objects.get(task_id=task_id).args == []
    assert list(LedgerEntry.objects.filter(run=run).values_list("task_id", flat=True)) == [task_id]


@pytest.mark.smoke
def test_a_message_a_busy_worker_took_ahead_is_not_sent_again(start_worker, settings) -> None:
    """A worker busy with a long task holds the messages it took ahead: out of the queue, not
    started, not lost (an upload of several files was sent again, file by file)."""
    settings.RELIABILITY_OUTBOX_CONFIRM_SECONDS = 0
    queue = f"outbox-ahead-{uuid.uuid4().hex[:6]}"
    run = uuid.uuid4().hex
    worker = start_worker(queues=queue, concurrency=1, name="outbox-ahead")
    with transaction.atomic():
        busy = outbox.dispatch_with_options(ledger_idempotent, (run,), {"sleep": 30}, queue=queue)
        ahead = outbox.dispatch_with_options(ledger_idempotent, (run,), queue=queue)
    wait_for(lambda: Delivery.objects.filter(task_id=busy).exists(), timeout=60)
    with app.connection_for_read() as connection:
        # Its queue is empty (Redis counts no consumers, RabbitMQ the worker's).
        wait_for(lambda: queue_state(queue, connection)[0] == 0, timeout=30)
    assert not Delivery.objects.filter(task_id=ahead).exists()  # taken, not started

    assert outbox.resend_lost() == 0
    assert OutboxMessage.objects.get(task_id=ahead).status == OutboxStatus.SENT
    worker.discard()


def test_a_countdown_not_yet_due_is_not_taken_for_lost(settings) -> None:
    settings.RELIABILITY_OUTBOX_CONFIRM_SECONDS = 0
    with transaction.atomic():
        task_id = outbox.dispatch_with_options(
            ledger_at_most_once, ("later",), queue=LOST_QUEUE + "-eta", countdown=3600
        )
    assert OutboxMessage.objects.get(task_id=task_id).status == OutboxStatus.SENT
    # Even with its queue empty: a task waiting for its countdown has not started, as planned.
    assert purge(LOST_QUEUE + "-eta") == 1
    assert outbox.resend_lost() == 0
