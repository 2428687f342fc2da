from __future__ import annotations

from unittest import mock

import pytest
from django.test import Client
from django.urls import reverse

from pages import services
from pages.models import PageInfo
from pages.tests.factories import make_page, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def dispatched():
    """The chains the views send, caught before they reach the broker."""
    with mock.patch.object(services, "dispatch_chain") as dispatch:
        yield dispatch


@pytest.fixture
def submitter(client: Client):
    user = make_user("pages.add_pageinfo")
    client.force_login(user)
    return user


@pytest.mark.parametrize(("name", "args"), [("index", []), ("detail", [1]), ("status", [1])])
def test_pages_need_a_login(client: Client, name: str, args: list[int]) -> None:
    response = client.get(reverse(f"pages:{name}", args=args))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_submitting_needs_the_add_permission(client: Client, dispatched) -> None:
    client.force_login(make_user())
    page = client.get(reverse("pages:index"))
    assert page.status_code == 200
    assert b'name="url"' not in page.content
    response = client.post(reverse("pages:submit"), {"url": "https://example.com/"})
    assert response.status_code == 403
    assert not PageInfo.objects.exists()
    assert not dispatched.called


def test_submit_takes_post_only(client: Client, submitter) -> None:
    assert client.get(reverse("pages:submit")).status_code == 405


def test_submit_saves_dispatches_after_commit_and_shows_the_page(
    client: Client, submitter, dispatched, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("pages:submit"), {"url": "https://example.com/a"})
    page = PageInfo.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("pages:detail", args=[page.pk])
    assert page.created_by == submitter
    assert page.url == "https://example.com/a"
    dispatched.assert_called_once_with(page)
    detail = client.get(response["Location"])
    assert b"Fetching https://example.com/a." in detail.content
    assert page.fetch_task_id.encode() in detail.content


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "Enter a valid URL."),
        ("ftp://example.com/file", "Only http and https URLs are fetched, not ftp."),
        ("http://127.0.0.1:8000/admin/", "pages on the internal network are not fetched"),
        ("http://[::1]/", "pages on the internal network are not fetched"),
        ("http://169.254.169.254/latest/", "pages on the internal network are not fetched"),
        ("http://user:pw@example.com/", "user name or password"),
    ],
)
def test_bad_urls_are_refused_with_the_reason_and_the_input_kept(
    client: Client, submitter, dispatched, url: str, message: str
) -> None:
    response = client.post(reverse("pages:submit"), {"url": url})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert response.context["form"]["url"].value() == url
    assert not PageInfo.objects.exists()
    assert not dispatched.called


def test_internal_literal_addresses_pass_the_form_when_allowed(
    client: Client, submitter, dispatched, settings, django_capture_on_commit_callbacks
) -> None:
    settings.PAGES_ALLOW_PRIVATE_ADDRESSES = True
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("pages:submit"), {"url": "http://127.0.0.1:8000/"})
    assert response.status_code == 302
    assert dispatched.called


def test_someone_elses_page_is_not_found(client: Client, submitter) -> None:
    other = make_page(created_by=make_user())
    assert client.get(reverse("pages:detail", args=[other.pk])).status_code == 404
    assert client.get(reverse("pages:status", args=[other.pk])).status_code == 404
    assert client.post(reverse("pages:again", args=[other.pk])).status_code == 404


def test_the_view_permission_shows_everyones_pages(client: Client) -> None:
    client.force_login(make_user("pages.view_pageinfo"))
    other = make_page(created_by=make_user())
    assert client.get(reverse("pages:detail", args=[other.pk])).status_code == 200
    assert other.url.encode() in client.get(reverse("pages:index")).content


def test_the_detail_and_the_json_show_the_same_outcome(client: Client, submitter) -> None:
    page = make_page(
        created_by=submitter,
        status=PageInfo.Status.DONE,
        status_code=200,
        title="Example Domain",
        description="An example.",
        links=["https://www.iana.org/domains/example"],
        elapsed_ms=87,
        content_type="text/html",
        is_html=True,
    )
    html = client.get(reverse("pages:detail", args=[page.pk])).content.decode()
    data = client.get(reverse("pages:status", args=[page.pk])).json()
    assert data["status"] == "done"
    assert data["finished"] is True
    assert data["title"] == "Example Domain"
    assert [step["task_id"] for step in data["chain"]] == page.task_ids
    assert [step["parent_id"] for step in data["chain"]] == [None, *page.task_ids[:2]]
    for text in ("Example Domain", "An example.", "https://www.iana.org/domains/example", "87 ms"):
        assert text in html


def test_a_page_that_is_not_html_says_so(client: Client, submitter) -> None:
    page = make_page(
        created_by=submitter, status=PageInfo.Status.DONE, is_html=False, content_type="text/csv"
    )
    html = client.get(reverse("pages:detail", args=[page.pk])).content.decode()
    assert "This is not an HTML page (text/csv)" in html


def test_fetch_again_makes_a_new_submission(
    client: Client, submitter, dispatched, django_capture_on_commit_callbacks
) -> None:
    old = make_page(created_by=submitter, status=PageInfo.Status.FAILED, error="boom")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("pages:again", args=[old.pk]))
    new = PageInfo.objects.exclude(pk=old.pk).get()
    assert response["Location"] == reverse("pages:detail", args=[new.pk])
    assert new.url == old.url
    old.refresh_from_db()
    assert old.error == "boom"  # the earlier outcome is kept
    dispatched.assert_called_once_with(new)


def test_admin_lists_pages_and_fetches_again(
    client: Client, admin_user, dispatched, django_capture_on_commit_callbacks
) -> None:
    client.force_login(admin_user)
    page = make_page(title="Listed")
    changelist = reverse("admin:pages_pageinfo_changelist")
    assert b"Listed" in client.get(changelist).content
    assert client.get(reverse("admin:pages_pageinfo_change", args=[page.pk])).status_code == 200
    assert client.get(reverse("admin:pages_pageinfo_add")).status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            changelist, {"action": "fetch_again", "_selected_action": [page.pk]}, follow=True
        )
    assert b"Fetching 1 URL again." in response.content
    assert PageInfo.objects.count() == 2
    assert dispatched.call_count == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("language", "not_queued", "queued"),
    [("en", "Not queued", "Queued"), ("zh-hans", "未入队", "已入队")],
)
def test_a_chain_the_broker_refused_shows_its_steps_as_not_queued(
    refusing_broker, language: str, not_queued: str, queued: str
) -> None:
    client = Client(raise_request_exception=False, HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(make_user("pages.add_pageinfo"))
    with refusing_broker():
        response = client.post(reverse("pages:submit"), {"url": "https://example.com/"})
    assert response.status_code == 503
    page = PageInfo.objects.get()
    assert page.status == PageInfo.Status.FAILED

    detail = client.get(reverse("pages:detail", args=[page.pk])).content.decode()
    assert detail.count(f"<td>{not_queued}</td>") == 3
    assert f"<td>{queued}</td>" not in detail
    assert "Connection refused" not in detail
    status = client.get(reverse("pages:status", args=[page.pk])).json()
    assert [step["state_label"] for step in status["chain"]] == [not_queued] * 3
