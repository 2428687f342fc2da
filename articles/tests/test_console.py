"""Expanding an article from the task console: the schema and who may launch it."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from operations.testing import console_launch
from taskconsole.models import ApiToken, AuditEntry, TaskRecord

from .factories import make_article, make_user

pytestmark = pytest.mark.django_db

LAUNCH = "/console/api/launch/"
TASK = "articles.tasks.expand_abbreviations"
CONSOLE_PERMS = ("taskconsole.view_taskrecord", "taskconsole.launch_task")


def launch(arguments: dict, *perms: str) -> tuple[int, dict]:
    client = Client()
    client.force_login(make_user(*CONSOLE_PERMS, *perms))
    return console_launch(client, TASK, arguments)


def test_an_editor_launches_it_with_the_article_id(sent) -> None:
    article = make_article()
    status, body = launch({"article_id": article.pk}, "articles.change_article")
    assert status == 201
    [message] = sent
    assert message["headers"]["task"] == TASK
    assert message["body"][1] == {"article_id": article.pk}
    assert AuditEntry.objects.get(target=body["task_id"]).action == "launch"


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({}, "Field required"),
        ({"article_id": "first"}, "valid integer"),
        ({"article_id": -3}, "greater than or equal to 1"),
        ({"article_id": 999_999}, "There is no article with id 999999."),
    ],
)
def test_bad_arguments_are_refused_and_nothing_is_published(sent, arguments, fragment) -> None:
    status, body = launch(arguments, "articles.change_article")
    assert status == 400
    assert body["error"] == "invalid_arguments"
    assert fragment in " ".join(body["errors"]["article_id"])
    assert sent == []
    assert not TaskRecord.objects.exists()
    assert not AuditEntry.objects.exists()


def test_the_console_permission_alone_is_not_enough(sent) -> None:
    # Adding articles is not enough either: expanding rewrites an existing body.
    status, body = launch({"article_id": make_article().pk}, "articles.add_article")
    assert status == 400
    assert body["errors"]["__all__"] == ["You may not change articles."]
    assert sent == []


def test_the_article_permission_is_checked_for_api_tokens_too(sent) -> None:
    article = make_article()
    allowed = ApiToken.issue(make_user(*CONSOLE_PERMS, "articles.change_article"))[1]
    refused = ApiToken.issue(make_user(*CONSOLE_PERMS))[1]
    payload = json.dumps({"task": TASK, "arguments": {"article_id": article.pk}})
    responses = [
        Client().post(LAUNCH, payload, "application/json", HTTP_AUTHORIZATION=f"Token {key}")
        for key in (refused, allowed)
    ]
    assert [r.status_code for r in responses] == [400, 201]
    assert responses[0].json()["errors"]["__all__"] == ["You may not change articles."]
    assert len(sent) == 1
