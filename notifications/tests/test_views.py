from __future__ import annotations

from unittest import mock

import pytest
from amqp.exceptions import AccessRefused, NotAllowed
from django.test import Client
from django.urls import reverse
from kombu.exceptions import OperationalError

from notifications.models import Delivery, Notification

from . import factories

pytestmark = pytest.mark.django_db

COMPOSE = reverse("notifications:compose")
INDEX = reverse("notifications:index")


@pytest.fixture
def sender(client: Client) -> Client:
    client.force_login(factories.user("add_notification", "view_notification"))
    return client


@pytest.mark.parametrize(
    "url",
    [INDEX, COMPOSE, reverse("notifications:detail", args=[1]), "/notifications/1/progress/"],
)
def test_anonymous_is_sent_to_the_login_page(client: Client, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_without_permission_is_forbidden(client: Client) -> None:
    client.force_login(factories.user(username="nobody"))
    assert client.get(INDEX).status_code == 403
    assert client.get(COMPOSE).status_code == 403
    assert (
        client.post(COMPOSE, {"subject": "S", "body": "B", "recipients": "a@x.com"}).status_code
        == 403
    )
    assert not Notification.objects.exists()


def test_compose_page_shows_the_form(sender: Client) -> None:
    response = sender.get(COMPOSE)
    assert response.status_code == 200
    assert b'name="recipients"' in response.content
    assert b"csrfmiddlewaretoken" in response.content


def test_a_bad_address_list_is_reported_and_nothing_is_created(sender: Client) -> None:
    text = "ok@example.com\nbroken@\nalso-ok@example.com\nno at sign"
    with mock.patch("notifications.tasks.dispatch_notification.delay") as delay:
        response = sender.post(COMPOSE, {"subject": "Hi", "body": "Text", "recipients": text})
    assert response.status_code == 400
    page = response.content.decode()
    assert "Line 2: “broken@” is not a valid email address." in page
    assert "Line 4: “no at sign” is not a valid email address." in page
    assert "Nothing was sent." in page
    # What was typed is still there, to be corrected rather than typed again.
    assert "also-ok@example.com" in page
    assert 'value="Hi"' in page
    assert not Notification.objects.exists()
    assert not Delivery.objects.exists()
    assert not delay.called


def test_compose_creates_and_dispatches_after_commit(
    sender: Client, django_capture_on_commit_callbacks
) -> None:
    text = "a@example.com\nb@example.com\nA@example.com\n"
    with mock.patch("notifications.tasks.dispatch_notification.delay") as delay:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = sender.post(COMPOSE, {"subject": "Hi", "body": "Text", "recipients": text})
        # Nothing is published until the transaction commits.
        assert not delay.called
        assert len(callbacks) == 1
        callbacks[0]()
    delay.assert_called_once_with(Notification.objects.get().pk)
    notification = Notification.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("notifications:detail", args=[notification.pk])
    assert notification.status == Notification.Status.QUEUED
    assert notification.created_by.username == "sender"
    assert sorted(notification.deliveries.values_list("email", flat=True)) == [
        "a@example.com",
        "b@example.com",
    ]


def test_compose_only_accepts_get_and_post(sender: Client) -> None:
    assert sender.put(COMPOSE).status_code == 405


def test_list_and_detail_show_progress(sender: Client) -> None:
    notification = factories.notification(["a@example.com", "b@example.com", "c@example.com"])
    notification.deliveries.filter(email="a@example.com").update(
        status=Delivery.Status.SENT, attempts=1
    )
    notification.deliveries.filter(email="b@example.com").update(
        status=Delivery.Status.RETRYING, attempts=2, last_error="451 busy"
    )
    Notification.objects.filter(pk=notification.pk).update(status=Notification.Status.SENDING)

    page = sender.get(INDEX).content.decode()
    assert "Hello" in page
    assert "Sending" in page

    response = sender.get(reverse("notifications:detail", args=[notification.pk]))
    page = response.content.decode()
    assert "3 recipients: 1 sent, 0 failed, 1 retrying, 1 pending." in page
    assert "451 busy" in page
    assert 'http-equiv="refresh"' in page

    retrying = sender.get(
        reverse("notifications:detail", args=[notification.pk]), {"status": "retrying"}
    ).content.decode()
    assert "b@example.com" in retrying
    assert "a@example.com" not in retrying

    data = sender.get(reverse("notifications:progress", args=[notification.pk])).json()
    assert data == {
        "id": notification.pk,
        "status": "sending",
        "status_display": "Sending",
        "recipients": 3,
        "pending": 1,
        "retrying": 1,
        "sent": 1,
        "failed": 0,
        "percent_done": 33,
        "failure_reason": "",
        "finished": False,
    }


def test_unknown_notification_is_404(sender: Client) -> None:
    assert sender.get(reverse("notifications:detail", args=[999])).status_code == 404
    response = sender.get(reverse("notifications:progress", args=[999]))
    assert response.status_code == 404
    assert response.json() == {"error": "No such notification."}


def test_send_button_dispatches_a_draft(client: Client, django_capture_on_commit_callbacks) -> None:
    client.force_login(factories.user("view_notification", "change_notification"))
    notification = factories.notification(2)
    url = reverse("notifications:detail", args=[notification.pk])
    assert "Send now" in client.get(url).content.decode()
    send_url = reverse("notifications:send", args=[notification.pk])
    assert client.get(send_url).status_code == 405
    with (
        mock.patch("notifications.tasks.dispatch_notification.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = client.post(send_url, follow=True)
    delay.assert_called_once_with(notification.pk)
    assert "The notification is queued for sending." in response.content.decode()


def test_retry_failed_button(client: Client, django_capture_on_commit_callbacks) -> None:
    client.force_login(factories.user("view_notification", "change_notification"))
    notification = factories.notification(2)
    notification.deliveries.update(status=Delivery.Status.FAILED, last_error="451 busy")
    Notification.objects.filter(pk=notification.pk).update(status=Notification.Status.FAILED)
    url = reverse("notifications:detail", args=[notification.pk])
    assert "Retry failed recipients" in client.get(url).content.decode()
    with (
        mock.patch("notifications.tasks.dispatch_notification.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        client.post(reverse("notifications:send", args=[notification.pk]), {"failed": "1"})
    delay.assert_called_once_with(notification.pk)
    assert set(notification.deliveries.values_list("status", flat=True)) == {"pending"}


def test_send_needs_the_change_permission(sender: Client) -> None:
    notification = factories.notification(1)
    assert sender.post(reverse("notifications:send", args=[notification.pk])).status_code == 403
    notification.refresh_from_db()
    assert notification.status == Notification.Status.DRAFT


@pytest.mark.parametrize(
    "refusal",
    [
        OperationalError("Error 111 connecting to 127.0.0.1:6379"),
        # What kombu lets through from RabbitMQ: an unknown vhost, refused credentials.
        NotAllowed("NOT_ALLOWED - vhost nosuchvhost not found"),
        AccessRefused("ACCESS_REFUSED - Login was refused"),
    ],
    ids=["kombu", "unknown-vhost", "bad-credentials"],
)
@pytest.mark.django_db(transaction=True)
def test_broker_down_keeps_the_notification_as_a_draft(sender: Client, refusal) -> None:
    form = {"subject": "Hi", "body": "Text", "recipients": "a@example.com"}
    with mock.patch("notifications.tasks.dispatch_notification.delay", side_effect=refusal):
        response = sender.post(COMPOSE, form)
    assert response.status_code == 503
    notification = Notification.objects.get()
    assert notification.status == Notification.Status.DRAFT
    assert "task queue was unavailable" in notification.failure_reason
    assert list(notification.deliveries.values_list("email", flat=True)) == ["a@example.com"]
