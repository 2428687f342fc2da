"""Delivery policies, dead letters and the outbox, with a real worker."""

from __future__ import annotations

import uuid
from unittest import mock

import pytest
from django.db import transaction
from django.test import Client
from django.utils import translation
from kombu.exceptions import OperationalError

from operations.testing import wait_for
from reliability import delivery, outbox
from reliability.ledger import (
    ledger_at_most_once,
    ledger_default,
    ledger_idempotent,
    ledger_plain,
)
from reliability.models import DeadLetter, LedgerEntry, OutboxMessage, OutboxStatus
from reliability.tasks import sweep_outbox
from taskconsole.models import TaskRecord, TaskStatus

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def worker(start_module_worker):
    # One child, so a killed child is replaced and the next delivery goes to the new one.
    return start_module_worker(queues="default", concurrency=1, name="delivery")


def ledger(run: str) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(run=run).order_by("id"))


def test_policies_are_visible_per_task(client: Client, django_user_model) -> None:
    assert delivery.policy_of(ledger_idempotent) == delivery.DeliveryPolicy.AT_LEAST_ONCE
    assert delivery.policy_of(ledger_default) == delivery.DeliveryPolicy.AT_MOST_ONCE
    assert delivery.policy_of("imports.tasks.process_import_file") == "at-least-once"
    names = {name: (policy, idem) for name, policy, idem in delivery.policies()}
    assert names["reliability.ledger.ledger_idempotent"] == ("at-least-once", True)
    assert names["app.tasks.add"] == ("at-most-once", False)
    # Only a task that opts out of the app's task class keeps Celery's bare early ack.
    assert names["reliability.ledger.ledger_plain"] == ("early-ack", False)
    assert delivery.policy_of(ledger_plain) == delivery.DeliveryPolicy.EARLY_ACK_ONLY

    assert client.get("/reliability/").status_code == 302
    client.force_login(django_user_model.objects.create_superuser("root", "r@x.org", "pw"))
    page = client.get("/reliability/").content.decode()
    assert "reliability.ledger.ledger_idempotent" in page
    assert "Idempotent: never lost" in page


def test_a_poison_pill_is_dead_lettered_after_n_deliveries_and_the_queue_flows(
    worker, settings
) -> None:
    run = uuid.uuid4().hex
    pill = ledger_idempotent.delay(run, kill=True)
    after = ledger_idempotent.delay(run + "-after")
    wait_for(lambda: DeadLetter.objects.filter(task_id=pill.id).exists(), timeout=90)
    letter = DeadLetter.objects.get(task_id=pill.id)
    assert letter.deliveries == settings.RELIABILITY_MAX_DELIVERIES + 1
    limit = settings.RELIABILITY_MAX_DELIVERIES
    assert letter.reason == (
        f"Delivered {limit + 1} times; its worker died during each of the previous {limit} "
        f"deliveries (limit {limit})."
    )
    # Each of the N deliveries ran (and killed the child); the next was set aside unrun.
    assert len(ledger(run)) == settings.RELIABILITY_MAX_DELIVERIES
    record = wait_for(
        lambda: TaskRecord.objects.filter(task_id=pill.id, status=TaskStatus.FAILURE).first(), 30
    )
    assert "DeadLettered" in record.exception
    wait_for(lambda: LedgerEntry.objects.filter(run=run + "-after").exists(), timeout=60)
    assert [e.task_id for e in ledger(run + "-after")] == [after.id]


def test_a_duplicate_message_never_runs_twice(worker) -> None:
    run = uuid.uuid4().hex
    task_id = str(uuid.uuid4())
    for task in (ledger_at_most_once, ledger_at_most_once, ledger_idempotent, ledger_idempotent):
        tid = task_id if task is ledger_at_most_once else task_id + "-i"
        task.apply_async((run,), task_id=tid)
    wait_for(lambda: len(ledger(run)) >= 2, timeout=60)
    # Both copies of each were received; give the second copies time to be skipped.
    wait_for(
        lambda: (
            TaskRecord.objects.filter(
                task_id__in=[task_id, task_id + "-i"], status=TaskStatus.SUCCESS
            ).count()
            == 2
        ),
        timeout=60,
    )
    ledger_default.delay(run + "-marker")
    wait_for(lambda: LedgerEntry.objects.filter(run=run + "-marker").exists(), timeout=60)
    assert sorted(e.task_id for e in ledger(run)) == sorted([task_id, task_id + "-i"])


def test_every_task_is_at_most_once_by_default_and_a_duplicate_keeps_the_first_outcome(
    worker,
) -> None:
    """The app's task class claims each run: a second message with the same id (a Redis
    redelivery, an outbox re-send) is dropped, and the stored result and the console's record
    keep the first run's outcome instead of going back to STARTED."""
    from django_celery_results.models import TaskResult

    from reliability.models import Delivery

    run, plain_run = uuid.uuid4().hex, uuid.uuid4().hex
    task_id, plain_id = str(uuid.uuid4()), str(uuid.uuid4())
    ledger_default.apply_async((run,), task_id=task_id)
    wait_for(lambda: TaskResult.objects.filter(task_id=task_id, status="SUCCESS").exists(), 60)
    ledger_default.apply_async((run,), task_id=task_id)
    # Celery's own Task has no claim: the same duplicate runs again.
    for _ in range(2):
        ledger_plain.apply_async((plain_run,), task_id=plain_id)
    wait_for(lambda: len(ledger(plain_run)) == 2, timeout=60)
    ledger_default.delay(run + "-marker")
    wait_for(lambda: LedgerEntry.objects.filter(run=run + "-marker").exists(), timeout=60)

    assert [e.task_id for e in ledger(run)] == [task_id]
    assert Delivery.objects.filter(task_id=task_id).count() == 1
    result = TaskResult.objects.get(task_id=task_id)
    assert (result.status, result.result) == ("SUCCESS", "1")
    assert TaskRecord.objects.get(task_id=task_id).status == TaskStatus.SUCCESS


def test_dispatch_on_commit_returns_the_id_and_publishes_after_commit(worker) -> None:
    run = uuid.uuid4().hex
    with transaction.atomic():
        task_id = outbox.dispatch_on_commit(ledger_idempotent, run)
        assert OutboxMessage.objects.get(task_id=task_id).status == OutboxStatus.PENDING
        assert not TaskRecord.objects.filter(task_id=task_id).exists()
    wait_for(lambda: LedgerEntry.objects.filter(task_id=task_id).exists(), timeout=60)
    message = OutboxMessage.objects.get(task_id=task_id)
    assert message.status == OutboxStatus.SENT
    assert (message.args, message.kwargs) == ([], {})


def test_a_task_that_starts_before_its_row_is_marked_sent_still_drops_the_arguments(
    worker,
) -> None:
    """The worker can run the task between the broker taking it and publish() marking the
    row: the arguments are not kept, and the sweeper does not send it again."""
    run = uuid.uuid4().hex
    publish = ledger_idempotent.apply_async
    before_the_mark: list[tuple] = []

    def publish_then_let_the_worker_run_first(*args, **kwargs):
        sent = publish(*args, **kwargs)
        wait_for(lambda: LedgerEntry.objects.filter(run=run).exists(), timeout=60)
        row = OutboxMessage.objects.get(task_id=sent.id)
        before_the_mark.append((row.status, row.args, row.kwargs))
        return sent

    with mock.patch.object(
        ledger_idempotent, "apply_async", side_effect=publish_then_let_the_worker_run_first
    ):
        task_id = outbox.dispatch_on_commit(ledger_idempotent, run)
    # The task started while the row was pending: it marked it sent and forgot the arguments.
    assert before_the_mark == [(OutboxStatus.SENT, [], {})]
    message = OutboxMessage.objects.get(task_id=task_id)
    assert (message.status, message.args, message.kwargs) == (OutboxStatus.SENT, [], {})
    assert message.sent_at is not None
    assert outbox.sweep(older_than=0) == 0
    assert [e.task_id for e in ledger(run)] == [task_id]


def test_a_row_a_started_copy_marked_sent_is_not_published_again(sent) -> None:
    """Unit test: the sweeper claims a pending row, and before it reads it a copy of the task
    (the first publish did reach the broker) starts and forgets the arguments. The sweeper
    must not publish the row: its arguments are gone."""
    message = outbox.enqueue(ledger_idempotent, ["run"], {})
    real_claim = outbox._claim

    def claim_then_a_copy_starts(pk, now):
        taken = real_claim(pk, now)
        outbox.forget_args(message.task_id)
        return taken

    with mock.patch.object(outbox, "_claim", side_effect=claim_then_a_copy_starts):
        assert outbox.publish(message.pk) is False
    assert sent == []
    row = OutboxMessage.objects.get(pk=message.pk)
    assert (row.status, row.args) == (OutboxStatus.SENT, [])


def test_a_rolled_back_dispatch_publishes_nothing() -> None:
    ids: list[str] = []

    def request_that_fails() -> None:
        with transaction.atomic():
            ids.append(outbox.dispatch_on_commit(ledger_idempotent, "never"))
            raise RuntimeError

    with pytest.raises(RuntimeError):
        request_that_fails()
    [task_id] = ids
    assert not OutboxMessage.objects.filter(task_id=task_id).exists()
    assert not TaskRecord.objects.filter(task_id=task_id).exists()


def test_the_sweeper_resends_what_the_broker_refused(worker) -> None:
    run = uuid.uuid4().hex
    down = OperationalError("broker down")
    with mock.patch.object(ledger_idempotent, "apply_async", side_effect=down):
        task_id = outbox.dispatch_on_commit(ledger_idempotent, run)
    message = OutboxMessage.objects.get(task_id=task_id)
    assert message.status == OutboxStatus.PENDING
    assert "broker down" in message.last_error
    # The periodic sweeper, through a real worker (grace 0 for the test).
    with mock.patch.object(outbox.settings, "RELIABILITY_OUTBOX_GRACE_SECONDS", 0):
        assert outbox.sweep() == 1
    assert outbox.sweep(older_than=0) == 0
    wait_for(lambda: LedgerEntry.objects.filter(task_id=task_id).exists(), timeout=60)
    sweep_outbox.delay()
    assert len(ledger(run)) == 1


def test_claims_are_pruned_after_the_redelivery_window(settings) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from reliability.models import Delivery

    settings.RELIABILITY_DELIVERY_KEEP_HOURS = 48
    now = timezone.now()
    old = Delivery.objects.create(key="old:0", task_id="old", first_at=now - timedelta(hours=49))
    recent = Delivery.objects.create(key="new:0", task_id="new", first_at=now - timedelta(hours=47))
    outbox.prune(max_age_days=7)
    assert list(Delivery.objects.filter(pk__in=[old.pk, recent.pk])) == [recent]


def test_a_dead_letter_reason_reads_in_the_site_language() -> None:
    with translation.override("en"):
        assert delivery.dead_letter_reason(2, 1) == (
            "Delivered 2 times; its worker died during the previous delivery (limit 1)."
        )
    with translation.override("zh-hans"):
        assert delivery.dead_letter_reason(4, 3) == (
            "已投递 4 次；前 3 次投递时，运行它的 worker 都退出了（上限 3 次）。"
        )
