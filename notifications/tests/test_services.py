from __future__ import annotations

import smtplib
from unittest import mock

import celery
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from kombu.exceptions import OperationalError

from notifications import services
from notifications.models import Delivery, Notification
from taskconsole.signals import Cancellation, announce_cancelled

from . import factories

pytestmark = pytest.mark.django_db

Status = Notification.Status
DStatus = Delivery.Status


def deliveries(notification: Notification) -> dict[str, Delivery]:
    return {d.email: d for d in notification.deliveries.all()}


def ids(notification: Notification) -> list[int]:
    return list(notification.deliveries.order_by("pk").values_list("pk", flat=True))


def refused(address: str, code: int) -> smtplib.SMTPRecipientsRefused:
    return smtplib.SMTPRecipientsRefused({address: (code, b"scripted refusal")})


# Creating


def test_create_stores_recipients_in_a_few_inserts() -> None:
    emails = [f"user{i}@example.com" for i in range(2500)]
    with CaptureQueriesContext(connection) as queries:
        notification = services.create_notification(subject="S", body="B", recipients=emails)
    inserts = [
        q["sql"]
        for q in queries
        if q["sql"].startswith("INSERT") and "notifications_delivery" in q["sql"]
    ]
    # 1000 rows per chunk (fewer per statement on SQLite, whose limit is 999 parameters).
    assert 3 <= len(inserts) <= 25
    assert notification.status == Status.DRAFT
    assert notification.deliveries.count() == 2500
    assert set(notification.deliveries.values_list("status", flat=True)) == {DStatus.PENDING}


def test_adding_an_address_twice_keeps_one_delivery() -> None:
    notification = factories.notification(["a@example.com"])
    services.add_recipients(notification, ["a@example.com", "b@example.com"])
    assert sorted(deliveries(notification)) == ["a@example.com", "b@example.com"]


# Dispatching


def test_dispatch_publishes_one_message_after_commit(django_capture_on_commit_callbacks) -> None:
    notification = factories.notification(30)
    with (
        mock.patch("notifications.tasks.dispatch_notification.delay") as delay,
        django_capture_on_commit_callbacks(execute=True) as callbacks,
    ):
        assert services.dispatch(notification) is True
        assert not delay.called
    assert len(callbacks) == 1
    delay.assert_called_once_with(notification.pk)
    notification.refresh_from_db()
    assert notification.status == Status.QUEUED


def test_dispatch_with_nothing_unsent_changes_nothing(django_capture_on_commit_callbacks) -> None:
    notification = factories.notification(2)
    notification.deliveries.update(status=DStatus.SENT)
    with django_capture_on_commit_callbacks() as callbacks:
        assert services.dispatch(notification) is False
    assert callbacks == []
    notification.refresh_from_db()
    assert notification.status == Status.DRAFT


def test_broker_down_leaves_a_draft_that_says_why(django_capture_on_commit_callbacks) -> None:
    notification = factories.notification(2)
    with (
        mock.patch(
            "notifications.tasks.dispatch_notification.delay",
            side_effect=OperationalError("connection refused"),
        ),
        pytest.raises(OperationalError),
        django_capture_on_commit_callbacks(execute=True),
    ):
        services.dispatch(notification)
    notification.refresh_from_db()
    assert notification.status == Status.DRAFT
    assert "task queue was unavailable" in notification.failure_reason
    assert notification.deliveries.count() == 2


def test_a_broker_that_did_not_answer_leaves_a_draft_that_says_it_may_still_send(
    django_capture_on_commit_callbacks,
) -> None:
    notification = factories.notification(2)
    silent = OperationalError("timed out")
    silent.__cause__ = TimeoutError("timed out")
    with (
        mock.patch("notifications.tasks.dispatch_notification.delay", side_effect=silent),
        pytest.raises(OperationalError),
        django_capture_on_commit_callbacks(execute=True),
    ):
        services.dispatch(notification)
    notification.refresh_from_db()
    assert notification.status == Status.DRAFT
    assert "may still be sent" in notification.failure_reason
    assert "sends no recipient twice" in notification.failure_reason


def test_enqueue_batches_publishes_one_group_of_batch_tasks(settings) -> None:
    settings.NOTIFICATIONS_BATCH_SIZE = 10
    notification = factories.notification(25)
    with mock.patch.object(celery.group, "apply_async", autospec=True) as apply_async:
        services.enqueue_batches(notification.pk)
    apply_async.assert_called_once()
    batches = apply_async.call_args.args[0].tasks
    assert [len(batch.args[1]) for batch in batches] == [10, 10, 5]
    assert {batch.task for batch in batches} == {"notifications.tasks.send_batch_notifications"}
    assert [pk for batch in batches for pk in batch.args[1]] == ids(notification)
    notification.refresh_from_db()
    assert notification.status == Status.SENDING


def test_enqueue_batches_batch_size_argument_wins_and_claimed_rows_are_left_out() -> None:
    notification = factories.notification(12)
    notification.deliveries.filter(pk__in=ids(notification)[:2]).update(batch_task_id="other")
    with mock.patch.object(celery.group, "apply_async", autospec=True) as apply_async:
        services.enqueue_batches(notification, batch_size=4)
    batches = apply_async.call_args.args[0].tasks
    assert [len(batch.args[1]) for batch in batches] == [4, 4, 2]


def test_enqueue_batches_with_nothing_to_send_publishes_nothing() -> None:
    notification = factories.notification(1)
    notification.deliveries.update(status=DStatus.SENT)
    Notification.objects.filter(pk=notification.pk).update(status=Status.SENDING)
    with mock.patch.object(celery.group, "apply_async", autospec=True) as apply_async:
        assert services.enqueue_batches(notification) is None
    assert not apply_async.called
    notification.refresh_from_db()
    assert notification.status == Status.SENT


def test_retry_failed_requeues_only_failed_recipients(django_capture_on_commit_callbacks) -> None:
    notification = factories.notification(["a@example.com", "b@example.com"])
    notification.deliveries.filter(email="a@example.com").update(
        status=DStatus.FAILED, batch_task_id="old", last_error="451 busy", attempts=4
    )
    notification.deliveries.filter(email="b@example.com").update(status=DStatus.SENT)
    Notification.objects.filter(pk=notification.pk).update(status=Status.PARTIAL)
    with (
        mock.patch("notifications.tasks.dispatch_notification.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert services.retry_failed(notification) == 1
    delay.assert_called_once_with(notification.pk)
    rows = deliveries(notification)
    assert rows["a@example.com"].status == DStatus.PENDING
    assert rows["a@example.com"].batch_task_id == ""
    assert rows["a@example.com"].attempts == 4
    assert rows["b@example.com"].status == DStatus.SENT


# Sending


def test_batch_sends_each_recipient_once_over_one_connection(scripted_backend) -> None:
    notification = factories.notification(3)
    # A recipient retried after an earlier temporary refusal: its error goes once it is sent.
    Delivery.objects.filter(notification=notification, email="user0@example.com").update(
        status=DStatus.RETRYING, last_error="451 busy", attempts=1
    )
    before = timezone.now()
    outcome = services.send_batch(notification.pk, ids(notification), claim="t1", last_try=False)
    after = timezone.now()
    assert outcome.as_dict() == {"sent": 3, "failed": 0, "retrying": 0}
    assert scripted_backend.opened == 1
    assert scripted_backend.closed == 1
    assert sorted(m.to[0] for m in scripted_backend.sent) == sorted(deliveries(notification))
    message = scripted_backend.sent[0]
    assert message.subject == "Hello"
    assert message.extra_headers["Message-ID"].startswith(f"<notification-{notification.pk}.")
    for email, delivery in deliveries(notification).items():
        assert delivery.status == DStatus.SENT
        assert delivery.attempts == (2 if email == "user0@example.com" else 1)
        assert delivery.last_error == ""
        # The UPDATE built once stores the same instant the ORM would (time zones included).
        assert before <= delivery.sent_at <= after
        assert delivery.batch_task_id == "t1"
    notification.refresh_from_db()
    assert notification.status == Status.SENT
    assert notification.finished_at is not None

    # Run again (a redelivered message): nobody is sent it a second time.
    services.send_batch(notification.pk, ids(notification), claim="t1", last_try=False)
    assert len(scripted_backend.sent) == 3


def test_a_recipient_claimed_by_another_batch_is_not_sent(scripted_backend) -> None:
    notification = factories.notification(["a@example.com", "b@example.com"])
    notification.deliveries.filter(email="a@example.com").update(batch_task_id="other")
    outcome = services.send_batch(notification.pk, ids(notification), claim="mine", last_try=False)
    assert outcome.sent == 1
    assert [m.to for m in scripted_backend.sent] == [["b@example.com"]]
    assert deliveries(notification)["a@example.com"].status == DStatus.PENDING


def test_permanent_refusal_fails_that_recipient_and_the_batch_goes_on(scripted_backend) -> None:
    notification = factories.notification(["a@example.com", "bad@example.com", "c@example.com"])
    scripted_backend.script = {"bad@example.com": [refused("bad@example.com", 550)]}
    outcome = services.send_batch(notification.pk, ids(notification), claim="t", last_try=False)
    assert outcome.as_dict() == {"sent": 2, "failed": 1, "retrying": 0}
    bad = deliveries(notification)["bad@example.com"]
    assert bad.status == DStatus.FAILED
    assert bad.last_error == "550 scripted refusal"
    assert bad.attempts == 1
    notification.refresh_from_db()
    assert notification.status == Status.PARTIAL
    assert notification.failure_reason == (
        "1 of 3 recipients could not be sent. Last error: 550 scripted refusal"
    )


def test_temporary_refusal_marks_retrying_and_raises_after_the_rest(scripted_backend) -> None:
    notification = factories.notification(["a@example.com", "busy@example.com", "c@example.com"])
    scripted_backend.script = {"busy@example.com": [refused("busy@example.com", 451)]}
    with pytest.raises(services.TemporaryDeliveryError, match="1 recipient could not be sent"):
        services.send_batch(notification.pk, ids(notification), claim="t", last_try=False)
    rows = deliveries(notification)
    assert rows["busy@example.com"].status == DStatus.RETRYING
    assert rows["busy@example.com"].last_error == "451 scripted refusal"
    assert rows["a@example.com"].status == rows["c@example.com"].status == DStatus.SENT
    notification.refresh_from_db()
    assert notification.status == Status.SENDING

    # The retry (same claim) sends only to the one still unsent.
    services.send_batch(notification.pk, ids(notification), claim="t", last_try=False)
    assert [m.to[0] for m in scripted_backend.sent].count("a@example.com") == 1
    assert [m.to[0] for m in scripted_backend.sent].count("busy@example.com") == 1
    busy = deliveries(notification)["busy@example.com"]
    assert busy.status == DStatus.SENT
    assert busy.attempts == 2
    notification.refresh_from_db()
    assert notification.status == Status.SENT


def test_on_the_last_try_a_temporary_refusal_is_a_failure(scripted_backend) -> None:
    notification = factories.notification(["busy@example.com"])
    scripted_backend.script = {"busy@example.com": [smtplib.SMTPDataError(452, b"full")]}
    with pytest.raises(services.TemporaryDeliveryError):
        services.send_batch(notification.pk, ids(notification), claim="t", last_try=True)
    busy = deliveries(notification)["busy@example.com"]
    assert busy.status == DStatus.FAILED
    assert busy.last_error == "452 full"
    notification.refresh_from_db()
    assert notification.status == Status.FAILED
    assert "452 full" in notification.failure_reason


def test_a_broken_connection_stops_the_batch_and_keeps_the_rest_for_the_retry(
    scripted_backend,
) -> None:
    notification = factories.notification(["a@example.com", "b@example.com", "c@example.com"])
    scripted_backend.script = {"b@example.com": [smtplib.SMTPServerDisconnected("gone")]}
    with pytest.raises(services.TemporaryDeliveryError, match="2 recipients could not be sent"):
        services.send_batch(notification.pk, ids(notification), claim="t", last_try=False)
    rows = deliveries(notification)
    assert rows["a@example.com"].status == DStatus.SENT
    assert rows["b@example.com"].status == rows["c@example.com"].status == DStatus.RETRYING
    assert rows["b@example.com"].attempts == 1
    # Not offered before the connection broke, but this try counts for it too.
    assert rows["c@example.com"].attempts == 1
    assert rows["c@example.com"].last_error == "SMTPServerDisconnected: gone"
    assert scripted_backend.closed == 1


def test_connection_refused_keeps_everyone_for_the_retry(scripted_backend) -> None:
    notification = factories.notification(2)
    refusal = scripted_backend.open_error = ConnectionRefusedError(111, "Connection refused")
    with pytest.raises(services.TemporaryDeliveryError, match="Connection refused"):
        services.send_batch(notification.pk, ids(notification), claim="t", last_try=False)
    rows = deliveries(notification).values()
    assert {d.status for d in rows} == {DStatus.RETRYING}
    # Nothing was offered, yet each recipient was tried once, and the row says why it failed.
    assert {d.attempts for d in rows} == {1}
    assert {d.last_error for d in rows} == {f"ConnectionRefusedError: {refusal}"}
    assert scripted_backend.sent == []

    # The retry gets through: one more attempt each, and the error is gone.
    services.send_batch(notification.pk, ids(notification), claim="t", last_try=False)
    rows = deliveries(notification).values()
    assert {(d.status, d.attempts, d.last_error) for d in rows} == {(DStatus.SENT, 2, "")}
    assert len(scripted_backend.sent) == 2


def test_a_batch_of_a_deleted_notification_does_nothing(scripted_backend) -> None:
    notification = factories.notification(2)
    delivery_ids = ids(notification)
    notification.delete()
    outcome = services.send_batch(notification.pk, delivery_ids, claim="t", last_try=False)
    assert outcome.as_dict() == {"sent": 0, "failed": 0, "retrying": 0}
    assert scripted_backend.opened == 0


def test_console_backend_in_development(settings, capsys) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    notification = factories.notification(["dev@example.com"], subject="Console")
    services.send_batch(notification.pk, ids(notification), claim="t", last_try=False)
    assert "Subject: Console" in capsys.readouterr().out
    assert deliveries(notification)["dev@example.com"].status == DStatus.SENT


def test_all_failed_is_failed() -> None:
    notification = factories.notification(2)
    notification.deliveries.update(status=DStatus.FAILED, last_error="550 no")
    Notification.objects.filter(pk=notification.pk).update(status=Status.SENDING)
    services.refresh_status(notification.pk)
    notification.refresh_from_db()
    assert notification.status == Status.FAILED
    assert notification.failure_reason == (
        "2 of 2 recipients could not be sent. Last error: 550 no"
    )


def test_a_cancelled_batch_fails_its_unsent_recipients_and_finishes_the_notification() -> None:
    notification = factories.notification(4)
    Notification.objects.filter(pk=notification.pk).update(status=Notification.Status.SENDING)
    first, second, third, fourth = notification.deliveries.order_by("pk")
    Delivery.objects.filter(pk__in=[first.pk, second.pk]).update(
        status=Delivery.Status.SENT, batch_task_id="batch-1"
    )
    # Another batch claimed the fourth: it is that batch's to send.
    Delivery.objects.filter(pk=fourth.pk).update(batch_task_id="batch-3")
    announce_cancelled("batch-2", services.BATCH_TASK, [notification.pk, [third.pk, fourth.pk]])
    statuses = dict(notification.deliveries.values_list("pk", "status"))
    assert statuses[third.pk] == Delivery.Status.FAILED
    assert statuses[fourth.pk] == Delivery.Status.PENDING
    third.refresh_from_db()
    assert third.last_error == "Its task was cancelled before this recipient was sent."
    assert third.attempts == 0
    notification.refresh_from_db()
    assert notification.status == Notification.Status.SENDING  # the fourth is still to send

    announce_cancelled(
        "batch-3", services.BATCH_TASK, [notification.pk, [fourth.pk]], terminated=True
    )
    notification.refresh_from_db()
    assert notification.status == Notification.Status.PARTIAL
    assert notification.failure_reason == (
        "2 of 4 recipients could not be sent. Last error: Its task was stopped while it ran, "
        "before this recipient was sent."
    )


def test_a_cancelled_dispatch_fails_every_unclaimed_recipient_in_the_authors_language() -> None:
    notification = factories.notification(2)
    Notification.objects.filter(pk=notification.pk).update(
        status=Notification.Status.QUEUED, language="zh-hans"
    )
    announce_cancelled("dispatch-1", services.DISPATCH_TASK, [notification.pk])
    notification.refresh_from_db()
    assert notification.status == Notification.Status.FAILED
    assert set(notification.deliveries.values_list("last_error", flat=True)) == {
        "它的任务在发送给这位收件人之前被取消了。"
    }
    # Arguments the console could not keep whole are not guessed at.
    other = factories.notification(1)
    announce_cancelled("b", services.BATCH_TASK, [other.pk, "[…]"])
    announce_cancelled("d", services.DISPATCH_TASK, ["…"])
    assert other.deliveries.get().status == Delivery.Status.PENDING


def test_a_dispatch_that_already_ran_or_a_started_batch_is_left_to_finish() -> None:
    notification = factories.notification(2)
    first = notification.deliveries.order_by("pk").first()
    Notification.objects.filter(pk=notification.pk).update(status=Notification.Status.SENDING)
    # The dispatch ran (the notification is sending): its batches have the recipients.
    dispatch = Cancellation("dispatch-1", services.DISPATCH_TASK)
    assert services.record_cancelled(notification.pk, None, dispatch) == 0
    # A batch that claimed its recipients has started: told "cancelled" without "stopped",
    # it is left to send them.
    Delivery.objects.filter(pk=first.pk).update(batch_task_id="batch-1")
    batch = Cancellation("batch-1", services.BATCH_TASK)
    assert services.record_cancelled(notification.pk, [first.pk], batch) == 0
    assert set(notification.deliveries.values_list("status", flat=True)) == {"pending"}
