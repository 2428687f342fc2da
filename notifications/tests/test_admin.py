from __future__ import annotations

from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from notifications.models import Delivery, Notification

from . import factories

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:notifications_notification_changelist")


@pytest.fixture
def admin(client: Client) -> Client:
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
    return client


def test_add_a_draft_with_recipients(admin: Client) -> None:
    response = admin.post(
        reverse("admin:notifications_notification_add"),
        {"subject": "From the admin", "body": "Text", "recipients": "a@example.com\nb@example.com"},
    )
    assert response.status_code == 302
    notification = Notification.objects.get()
    assert notification.status == Notification.Status.DRAFT
    assert notification.created_by.username == "admin"
    assert notification.deliveries.count() == 2


def test_a_draft_added_in_chinese_keeps_its_language(admin: Client) -> None:
    admin.post(
        reverse("admin:notifications_notification_add"),
        {"subject": "通知", "body": "正文", "recipients": "a@example.com"},
        HTTP_ACCEPT_LANGUAGE="zh-hans",
    )
    assert Notification.objects.get().language == "zh-hans"


def test_add_with_a_bad_address_creates_nothing(admin: Client) -> None:
    response = admin.post(
        reverse("admin:notifications_notification_add"),
        {"subject": "S", "body": "Text", "recipients": "a@example.com\nnope"},
    )
    assert response.status_code == 200
    assert "Line 2: “nope” is not a valid email address." in response.content.decode()
    assert not Notification.objects.exists()


def test_changelist_and_change_page_show_counts(admin: Client) -> None:
    notification = factories.notification(4)
    notification.deliveries.filter(email="user0@example.com").update(status=Delivery.Status.SENT)
    assert admin.get(CHANGELIST).status_code == 200
    page = admin.get(
        reverse("admin:notifications_notification_change", args=[notification.pk])
    ).content.decode()
    assert "1 sent, 0 failed, 0 retrying, 3 pending" in page
    assert admin.get(reverse("admin:notifications_delivery_changelist")).status_code == 200


def test_send_action_dispatches_drafts_and_skips_the_rest(
    admin: Client, django_capture_on_commit_callbacks
) -> None:
    draft = factories.notification(2)
    done = factories.notification(1)
    done.deliveries.update(status=Delivery.Status.SENT)
    with (
        mock.patch("notifications.tasks.dispatch_notification.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = admin.post(
            CHANGELIST,
            {"action": "send_notifications", "_selected_action": [draft.pk, done.pk]},
            follow=True,
        )
    delay.assert_called_once_with(draft.pk)
    page = response.content.decode()
    assert "1 notification queued for sending." in page
    assert "1 notification has no recipient waiting to be sent" in page
    draft.refresh_from_db()
    assert draft.status == Notification.Status.QUEUED


def test_retry_failed_action(admin: Client, django_capture_on_commit_callbacks) -> None:
    notification = factories.notification(2)
    notification.deliveries.update(status=Delivery.Status.FAILED)
    with (
        mock.patch("notifications.tasks.dispatch_notification.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = admin.post(
            CHANGELIST,
            {"action": "retry_failed_recipients", "_selected_action": [notification.pk]},
            follow=True,
        )
    delay.assert_called_once_with(notification.pk)
    assert "2 failed recipients queued again." in response.content.decode()
    assert set(notification.deliveries.values_list("status", flat=True)) == {"pending"}


def test_delete_action_removes_notifications_and_their_deliveries(admin: Client) -> None:
    notification = factories.notification(3)
    response = admin.post(
        CHANGELIST,
        {"action": "delete_selected", "_selected_action": [notification.pk], "post": "yes"},
        follow=True,
    )
    assert response.status_code == 200
    assert not Notification.objects.exists()
    assert not Delivery.objects.exists()
