"""The tasks' policy, run in-process with apply(); the real worker runs them in test_integration."""

from __future__ import annotations

import smtplib
from unittest import mock

import pytest

from notifications.models import Delivery, Notification
from notifications.services import TemporaryDeliveryError
from notifications.tasks import dispatch_notification, send_batch_notifications

from . import factories

pytestmark = pytest.mark.django_db


def busy(address: str) -> smtplib.SMTPRecipientsRefused:
    return smtplib.SMTPRecipientsRefused({address: (451, b"busy")})


def test_a_temporary_failure_is_retried_and_then_sent(scripted_backend) -> None:
    notification = factories.notification(["busy@example.com", "ok@example.com"])
    scripted_backend.script = {"busy@example.com": [busy("busy@example.com")] * 2}
    ids = list(notification.deliveries.values_list("pk", flat=True))
    result = send_batch_notifications.apply(args=[notification.pk, ids])
    assert result.successful()
    assert result.result == {"sent": 1, "failed": 0, "retrying": 0}  # the last try's outcome
    assert sorted(m.to[0] for m in scripted_backend.sent) == ["busy@example.com", "ok@example.com"]
    assert Delivery.objects.get(email="busy@example.com").attempts == 3
    assert Delivery.objects.get(email="ok@example.com").attempts == 1


def test_after_max_retries_the_failure_is_recorded_and_raised(scripted_backend, settings) -> None:
    notification = factories.notification(["busy@example.com"])
    scripted_backend.script = {"busy@example.com": [busy("busy@example.com")] * 10}
    ids = list(notification.deliveries.values_list("pk", flat=True))
    with mock.patch.object(
        send_batch_notifications, "retry", wraps=send_batch_notifications.retry
    ) as retry:
        result = send_batch_notifications.apply(args=[notification.pk, ids])
    assert result.failed()
    assert isinstance(result.result, TemporaryDeliveryError)
    assert retry.call_count == 4  # three retries, and the fourth call re-raises
    assert {call.kwargs["countdown"] for call in retry.call_args_list} == {
        settings.NOTIFICATIONS_RETRY_COUNTDOWN
    }
    delivery = Delivery.objects.get()
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.attempts == 4
    notification.refresh_from_db()
    assert notification.status == Notification.Status.FAILED
    assert notification.failure_reason.endswith("Last error: 451 busy")


def test_a_refused_connection_counts_every_try_for_every_recipient(scripted_backend) -> None:
    notification = factories.notification(["a@example.com", "b@example.com"])
    ids = list(notification.deliveries.values_list("pk", flat=True))
    refused = ConnectionRefusedError(111, "Connection refused")
    with mock.patch.object(scripted_backend, "open", side_effect=refused) as opened:
        result = send_batch_notifications.apply(args=[notification.pk, ids])
    assert result.failed()
    assert opened.call_count == 4
    assert scripted_backend.sent == []
    rows = Delivery.objects.filter(notification=notification)
    assert {(d.status, d.attempts) for d in rows} == {(Delivery.Status.FAILED, 4)}
    assert {d.last_error for d in rows} == {f"ConnectionRefusedError: {refused}"}


def test_dispatch_task_returns_the_number_of_batches(settings) -> None:
    settings.NOTIFICATIONS_BATCH_SIZE = 2
    notification = factories.notification(5)
    with mock.patch("notifications.tasks.send_batch_notifications.apply_async") as apply_async:
        result = dispatch_notification.apply(args=[notification.pk])
    assert result.result == 3
    assert apply_async.call_count == 3
