"""Fetching a URL from the task console: the schema and who may launch it."""

from __future__ import annotations

import pytest
from django.test import Client

from operations.testing import console_launch
from pages.models import PageInfo
from pages.tasks import submit_url
from taskconsole.models import AuditEntry, TaskRecord

from .factories import make_user

pytestmark = pytest.mark.django_db

LAUNCH = "/console/api/launch/"
TASK = "pages.tasks.submit_url"
CONSOLE_PERMS = ("taskconsole.view_taskrecord", "taskconsole.launch_task")


def launch(arguments: dict, *perms: str) -> tuple[int, dict]:
    client = Client()
    client.force_login(make_user(*CONSOLE_PERMS, *perms))
    return console_launch(client, TASK, arguments)


def test_a_url_is_launched_as_the_form_would_clean_it(sent) -> None:
    status, body = launch({"url": "example.com/a"}, "pages.add_pageinfo")
    assert status == 201
    [message] = sent
    assert message["headers"]["task"] == TASK
    assert message["body"][1] == {"url": "https://example.com/a"}
    assert TaskRecord.objects.get(task_id=body["task_id"]).kwargs == {
        "url": "https://example.com/a"
    }


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({}, "Field required"),
        ({"url": ""}, "at least 1 character"),
        ({"url": 42}, "valid string"),
        ({"url": "ftp://example.com/"}, "Only http and https URLs are fetched"),
        ({"url": "http://127.0.0.1/"}, "pages on the internal network are not fetched"),
        ({"url": "https://example.com/" + "a" * 2100}, "at most 2000 characters"),
    ],
)
def test_bad_urls_are_refused_and_nothing_is_published(sent, arguments: dict, fragment) -> None:
    status, body = launch(arguments, "pages.add_pageinfo")
    assert status == 400
    assert body["error"] == "invalid_arguments"
    assert fragment in " ".join(body["errors"]["url"])
    assert sent == []
    assert not TaskRecord.objects.exists()
    assert not AuditEntry.objects.exists()


def test_the_console_permission_alone_is_not_enough(sent) -> None:
    status, body = launch({"url": "https://example.com/"})
    assert status == 400
    assert body["errors"]["__all__"] == ["You may not fetch pages."]
    assert sent == []
    assert not PageInfo.objects.exists()


def test_the_task_stores_the_row_and_sends_its_chain(
    sent, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        page_id = submit_url.apply(args=["https://example.com/"]).result
    page = PageInfo.objects.get(pk=page_id)
    assert (page.url, page.created_by) == ("https://example.com/", None)
    [message] = sent
    assert message["headers"]["id"] == page.fetch_task_id
