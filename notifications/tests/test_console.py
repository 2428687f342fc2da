"""Sending a notification from the task console: the schema and who may launch it."""

from __future__ import annotations

import pytest
from django.test import Client

from notifications import services
from notifications.models import Delivery
from notifications.tasks import send_notification
from operations.testing import console_launch
from taskconsole.models import AuditEntry, TaskRecord

from . import factories

pytestmark = pytest.mark.django_db

LAUNCH = "/console/api/launch/"
TASK = "notifications.tasks.send_notification"


def console_client(*notification_perms: str) -> Client:
    client = Client()
    client.force_login(factories.console_user(*notification_perms))
    return client


def launch(client: Client, arguments: dict) -> tuple[int, dict]:
    return console_launch(client, TASK, arguments)


def test_a_sender_launches_it_with_the_notification_id(sent) -> None:
    notification = factories.notification(2)
    status, body = launch(
        console_client("change_notification"), {"notification_id": notification.pk}
    )
    assert status == 201
    [message] = sent
    assert message["headers"]["task"] == TASK
    assert message["body"][1] == {"notification_id": notification.pk, "retry_failed": False}
    assert TaskRecord.objects.get(task_id=body["task_id"]).name == TASK


@pytest.mark.parametrize(
    ("arguments", "field", "fragment"),
    [
        ({}, "notification_id", "Field required"),
        ({"notification_id": "one"}, "notification_id", "valid integer"),
        ({"notification_id": 0}, "notification_id", "greater than or equal to 1"),
        ({"notification_id": 999_999}, "notification_id", "There is no notification"),
        ({"retry_failed": True}, "__all__", "is waiting to be sent"),
    ],
)
def test_bad_arguments_are_refused_and_nothing_is_published(
    sent, arguments: dict, field: str, fragment: str
) -> None:
    notification = factories.notification(1)
    if arguments.get("retry_failed"):
        arguments = {**arguments, "notification_id": notification.pk}  # no failed recipient
    status, body = launch(console_client("change_notification"), arguments)
    assert status == 400
    assert body["error"] == "invalid_arguments"
    assert fragment in " ".join(body["errors"][field])
    assert sent == []
    assert not TaskRecord.objects.exists()
    assert not AuditEntry.objects.exists()


def test_a_notification_already_sent_is_refused(sent) -> None:
    notification = factories.notification(1)
    notification.deliveries.update(status=Delivery.Status.SENT)
    status, body = launch(
        console_client("change_notification"), {"notification_id": notification.pk}
    )
    assert status == 400
    assert "No recipient of this notification is waiting to be sent." in body["errors"]["__all__"]
    assert sent == []


def test_the_console_permission_alone_is_not_enough(sent) -> None:
    notification = factories.notification(1)
    status, body = launch(console_client("view_notification"), {"notification_id": notification.pk})
    assert status == 400
    assert body["errors"]["__all__"] == ["You may not send notifications."]
    assert sent == []
    assert not TaskRecord.objects.exists()


def test_the_task_sends_as_the_page_does(sent, django_capture_on_commit_callbacks) -> None:
    notification = factories.notification(3)
    notification.deliveries.filter(email="user0@example.com").update(status=Delivery.Status.FAILED)
    with django_capture_on_commit_callbacks(execute=True):
        result = send_notification.apply(args=[notification.pk])
    assert result.result == {"notification_id": notification.pk, "queued": True}
    assert [m["headers"]["task"] for m in sent] == ["notifications.tasks.dispatch_notification"]
    with django_capture_on_commit_callbacks(execute=True):
        result = send_notification.apply(args=[notification.pk], kwargs={"retry_failed": True})
    assert result.result["queued"] is True
    assert notification.deliveries.get(email="user0@example.com").status == "pending"
    assert len(sent) == 2
    assert send_notification.apply(args=[999_999]).failed()


def test_a_batch_reports_its_progress_recipient_by_recipient(scripted_backend) -> None:
    notification = factories.notification(3)
    ids = list(notification.deliveries.values_list("pk", flat=True))
    seen: list[tuple[int, int]] = []
    services.send_batch(
        notification.pk, ids, claim="t", last_try=False, progress=lambda *p: seen.append(p)
    )
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert len(scripted_backend.sent) == 3
