"""Notifications end to end: a real worker sending through a real SMTP server (aiosmtpd).

The module starts its own worker on `default` (and never uses `celery_worker`, which would
share the queue) so that worker can point at the local SMTP server, retry after 1 s, and cut
batches of 10.
"""

from __future__ import annotations

import json
from collections import Counter
from itertools import pairwise

import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django_celery_results.models import TaskResult

from notifications import services
from notifications.models import Delivery, Notification
from operations.testing import ManagedProcess, wait_for
from taskconsole.models import Origin, TaskRecord, TaskStatus

from . import factories
from .conftest import LocalSMTPServer

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BATCH_TASK = "notifications.tasks.send_batch_notifications"
Status = Notification.Status
DStatus = Delivery.Status
TIMEOUT = 60


@pytest.fixture(scope="module")
def mail_worker(start_module_worker, smtp_server: LocalSMTPServer) -> ManagedProcess:
    return start_module_worker(
        queues="default",
        name="mail",
        extra_env={
            "EMAIL_URL": smtp_server.url,
            "NOTIFICATIONS_RETRY_COUNTDOWN": "1",
            "NOTIFICATIONS_BATCH_SIZE": "10",
        },
    )


@pytest.fixture
def smtp(smtp_server: LocalSMTPServer, mail_worker: ManagedProcess) -> LocalSMTPServer:
    smtp_server.handler.configure()
    return smtp_server


def send(notification: Notification) -> None:
    """Dispatch as the page does: inside a transaction, published when it commits."""
    with transaction.atomic():
        services.dispatch(notification)


def finished(notification: Notification, timeout: float = TIMEOUT) -> Notification:
    def done() -> Notification | None:
        notification.refresh_from_db()
        return notification if notification.finished else None

    return wait_for(done, timeout=timeout)


def emails_received(smtp: LocalSMTPServer, notification: Notification) -> Counter[str]:
    return Counter(r.to for r in smtp.handler.received_for(notification.pk))


def batch_results(notification: Notification) -> list[TaskResult]:
    claims = set(notification.deliveries.values_list("batch_task_id", flat=True))
    return list(TaskResult.objects.filter(task_id__in=claims, task_name=BATCH_TASK))


def delivery(notification: Notification, email: str) -> Delivery:
    return notification.deliveries.get(email=email)


def test_25_recipients_go_out_in_3_batches_once_each(smtp: LocalSMTPServer) -> None:
    notification = factories.notification(25, subject="Batched")
    send(notification)
    assert finished(notification).status == Status.SENT
    expected = {f"user{i}@example.com" for i in range(25)}
    assert emails_received(smtp, notification) == Counter(expected)
    # NOTIFICATIONS_BATCH_SIZE=10 in the worker's environment: 10 + 10 + 5.
    per_batch = Counter(notification.deliveries.values_list("batch_task_id", flat=True))
    assert sorted(per_batch.values()) == [5, 10, 10]
    # The worker writes results with its next batch of writes (taskconsole.writeback).
    results = wait_for(
        lambda: (
            (rows := batch_results(notification))
            and {row.status for row in rows} == {"SUCCESS"}
            and len(rows) == 3
            and rows
        )
    )
    assert {row.worker.split("-")[0] for row in results} == {"mail"}
    assert set(notification.deliveries.values_list("status", "attempts")) == {(DStatus.SENT, 1)}
    assert {r.subject for r in smtp.handler.received_for(notification.pk)} == {"Batched"}


def test_the_service_batch_size_argument_splits_from_the_caller(smtp: LocalSMTPServer) -> None:
    notification = factories.notification(25)
    result = services.enqueue_batches(notification, batch_size=9)
    assert len(result.results) == 3
    assert finished(notification).status == Status.SENT
    assert sum(emails_received(smtp, notification).values()) == 25
    per_batch = Counter(notification.deliveries.values_list("batch_task_id", flat=True))
    assert sorted(per_batch.values()) == [7, 9, 9]
    assert set(per_batch) == {r.id for r in result.results}


def test_refused_at_first_then_retried_after_the_countdown_and_received_once(
    smtp: LocalSMTPServer, mail_worker: ManagedProcess
) -> None:
    smtp.handler.configure(temporary={"busy@example.com": 2})
    notification = factories.notification(["early@example.com", "busy@example.com"])
    send(notification)
    assert finished(notification).status == Status.SENT

    busy = delivery(notification, "busy@example.com")
    assert (busy.status, busy.attempts, busy.last_error) == (DStatus.SENT, 3, "")
    assert delivery(notification, "early@example.com").attempts == 1
    # Each recipient once: the retries sent only to the one still unsent.
    assert emails_received(smtp, notification) == Counter(
        {"early@example.com": 1, "busy@example.com": 1}
    )
    tries = smtp.handler.attempts["busy@example.com"]
    assert [code for _, code in tries] == [451, 451, 250]
    # countdown=1: no retry came sooner than a second after the refusal that caused it.
    assert all(later - earlier >= 0.9 for (earlier, _), (later, _) in pairwise(tries))
    (row,) = batch_results(notification)
    assert wait_for(lambda: TaskResult.objects.get(pk=row.pk).status == "SUCCESS")
    mail_worker.wait_for_output(f"{BATCH_TASK}[{row.task_id}] retry: Retry in 1s")


def test_retries_exhausted_the_failure_is_recorded_with_its_reason(smtp: LocalSMTPServer) -> None:
    smtp.handler.configure(temporary={"never@example.com": 100})
    notification = factories.notification(["never@example.com", "fine@example.com"])
    send(notification)
    assert finished(notification).status == Status.PARTIAL

    never = delivery(notification, "never@example.com")
    assert never.status == DStatus.FAILED
    assert never.attempts == 4  # the first try and max_retries=3
    assert never.last_error.startswith("451 4.3.0")
    assert len(smtp.handler.attempts["never@example.com"]) == 4
    assert notification.failure_reason.startswith("1 of 2 recipients could not be sent.")
    assert "451 4.3.0" in notification.failure_reason
    assert emails_received(smtp, notification) == Counter({"fine@example.com": 1})
    (row,) = batch_results(notification)
    row = wait_for(lambda: TaskResult.objects.filter(pk=row.pk, status="FAILURE").first())
    assert "TemporaryDeliveryError" in row.result


def test_the_failure_reason_is_written_in_the_authors_language(
    smtp: LocalSMTPServer, client: Client
) -> None:
    # The worker's own language is the site's (English): it writes in the author's.
    smtp.handler.configure(permanent={"nobody@example.com"})
    client.force_login(factories.user("add_notification", "view_notification"))
    form = {"subject": "你好", "body": "正文", "recipients": "nobody@example.com\nok@example.com"}
    client.post(reverse("notifications:compose"), form, HTTP_ACCEPT_LANGUAGE="zh-hans")
    notification = Notification.objects.get()
    assert notification.language == "zh-hans"
    assert finished(notification).status == Status.PARTIAL
    reason = notification.failure_reason
    assert reason.startswith("2 个收件人中有 1 个发送失败。最近错误：550 5.1.1")


def test_a_permanently_failing_address_fails_and_the_rest_are_sent(
    smtp: LocalSMTPServer,
) -> None:
    smtp.handler.configure(permanent={"nobody@example.com"})
    notification = factories.notification(
        ["first@example.com", "nobody@example.com", "last@example.com"]
    )
    send(notification)
    assert finished(notification).status == Status.PARTIAL

    nobody = delivery(notification, "nobody@example.com")
    assert nobody.status == DStatus.FAILED
    assert nobody.attempts == 1  # a 5xx is not retried
    assert nobody.last_error.startswith("550 5.1.1")
    assert len(smtp.handler.attempts["nobody@example.com"]) == 1
    assert emails_received(smtp, notification) == Counter(
        {"first@example.com": 1, "last@example.com": 1}
    )
    assert "550 5.1.1 No such user here" in notification.failure_reason
    (row,) = batch_results(notification)
    row = wait_for(lambda: TaskResult.objects.filter(pk=row.pk, status="SUCCESS").first())
    assert row.result == '{"sent": 2, "failed": 1, "retrying": 0}'


def test_connection_refused_is_retried_until_the_server_is_back(smtp: LocalSMTPServer) -> None:
    notification = factories.notification(["patient@example.com"])
    smtp.stop()
    try:
        send(notification)
        refused = wait_for(
            lambda: notification.deliveries.filter(status=DStatus.RETRYING).first(),
            timeout=TIMEOUT,
        )
    finally:
        smtp.start()
    assert "Connection refused" in refused.last_error
    assert refused.attempts >= 1  # the refused try counts, though nothing was offered
    assert finished(notification).status == Status.SENT
    assert emails_received(smtp, notification) == Counter({"patient@example.com": 1})
    sent = delivery(notification, "patient@example.com")
    # The refused tries and the one that got through; the error went with it.
    assert (sent.attempts > refused.attempts, sent.last_error) == (True, "")


def test_connection_refused_on_every_try_counts_each_try_and_keeps_the_error(
    smtp: LocalSMTPServer,
) -> None:
    """A tutorial reader's way to force retries: an SMTP address where nothing listens."""
    notification = factories.notification(["first@example.com", "second@example.com"])
    smtp.stop()
    try:
        send(notification)
        assert finished(notification).status == Status.FAILED
        (row,) = batch_results(notification)
        row = wait_for(lambda: TaskResult.objects.filter(pk=row.pk, status="FAILURE").first())
    finally:
        smtp.start()
    for email in ("first@example.com", "second@example.com"):
        refused = delivery(notification, email)
        assert refused.status == DStatus.FAILED
        assert refused.attempts == 4  # the first try and max_retries=3, all refused
        assert "Connection refused" in refused.last_error
    assert "Connection refused" in notification.failure_reason
    assert "TemporaryDeliveryError" in row.result
    assert emails_received(smtp, notification) == Counter()


def test_the_compose_page_creates_and_dispatches_on_commit(
    smtp: LocalSMTPServer, client: Client
) -> None:
    client.force_login(factories.user("add_notification", "view_notification"))
    form = {"subject": "From the page", "body": "Hi", "recipients": "p@example.com\nq@example.com"}
    response = client.post(reverse("notifications:compose"), form)
    notification = Notification.objects.get()
    assert response.status_code == 302
    assert finished(notification).status == Status.SENT
    assert emails_received(smtp, notification) == Counter({"p@example.com": 1, "q@example.com": 1})
    page = client.get(response["Location"]).content.decode()
    assert "2 recipients: 2 sent, 0 failed, 0 retrying, 0 pending." in page


def test_sent_from_the_task_console_its_batches_show_as_a_group_of_children(
    smtp: LocalSMTPServer, client: Client
) -> None:
    notification = factories.notification(25, subject="From the console")
    operator = factories.console_user("change_notification")
    client.force_login(operator)
    response = client.post(
        "/console/api/launch/",
        json.dumps(
            {
                "task": "notifications.tasks.send_notification",
                "arguments": {"notification_id": notification.pk},
            }
        ),
        content_type="application/json",
    )
    assert response.status_code == 201
    launched_id = response.json()["task_id"]
    assert finished(notification).status == Status.SENT
    assert sum(emails_received(smtp, notification).values()) == 25

    def succeeded(**filters: object) -> list[TaskRecord]:
        return list(TaskRecord.objects.filter(status=TaskStatus.SUCCESS, **filters))

    [launched] = wait_for(lambda: succeeded(task_id=launched_id), timeout=TIMEOUT)
    assert (launched.origin, launched.owner_id) == (Origin.CONSOLE, operator.pk)
    [dispatch] = wait_for(lambda: succeeded(parent_id=launched_id), timeout=TIMEOUT)
    assert dispatch.name == "notifications.tasks.dispatch_notification"
    batches = wait_for(
        lambda: len(rows := succeeded(parent_id=dispatch.task_id)) == 3 and rows, timeout=TIMEOUT
    )
    assert {b.name for b in batches} == {BATCH_TASK}
    assert {b.task_id for b in batches} == set(
        notification.deliveries.values_list("batch_task_id", flat=True)
    )
    [group_id] = {b.group_id for b in batches}
    assert group_id
    assert {(b.root_id, b.owner_id, b.origin) for b in batches} == {
        (launched_id, operator.pk, Origin.TASK)
    }
    # Each batch told the console how many of its recipients it had handled.
    assert sorted((b.progress_current, b.progress_total) for b in batches) == [
        (5, 5),
        (10, 10),
        (10, 10),
    ]

    # What the console's detail page shows: the parent, the children, the group.
    detail = client.get(f"/console/api/tasks/{dispatch.task_id}/").json()["relations"]
    assert [r["task_id"] for r in detail["parent"]] == [launched_id]
    assert {r["task_id"] for r in detail["children"]} == {b.task_id for b in batches}
    one = client.get(f"/console/api/tasks/{batches[0].task_id}/").json()["relations"]
    assert [r["task_id"] for r in one["parent"]] == [dispatch.task_id]
    assert {r["task_id"] for r in one["group"]} == {b.task_id for b in batches[1:]}
    page = client.get(f"/console/tasks/{dispatch.task_id}/").content.decode()
    assert all(f"/console/tasks/{b.task_id}/" in page for b in batches)
    assert f"/console/tasks/{launched_id}/" in page
