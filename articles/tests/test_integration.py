"""The tutorial's two races, against a real broker and real worker subprocesses."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from celery.signals import after_task_publish
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django_celery_results.models import TaskResult

from app.tasks import ping
from articles import services
from articles.models import Article, ExpansionStatus
from articles.tasks import expand_abbreviations
from operations.testing import wait_for
from taskconsole.models import Origin, TaskRecord, TaskStatus

from .factories import make_abbreviation, make_article, make_user

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TASK_NAME = "articles.tasks.expand_abbreviations"


@pytest.fixture
def writer(client: Client) -> Client:
    client.force_login(make_user("articles.add_article", "articles.change_article"))
    return client


@pytest.fixture
def published() -> list[dict]:
    """The headers of every task message this process publishes while the test runs."""
    seen: list[dict] = []

    def record(sender: str, headers: dict | None = None, **kwargs: object) -> None:
        seen.append(headers or {})

    after_task_publish.connect(record, weak=False)
    yield seen
    after_task_publish.disconnect(record)


def expanded(article_id: int) -> Article | None:
    return Article.objects.filter(pk=article_id, expansion_status=ExpansionStatus.EXPANDED).first()


def test_creating_through_the_page_gets_the_body_expanded(
    writer: Client, celery_worker, published
) -> None:
    make_abbreviation()
    response = writer.post(
        reverse("articles:create"), {"title": "Launch", "body": "MyCorp ships on Monday."}
    )
    assert response.status_code == 302
    article_id = Article.objects.get().pk
    article = wait_for(lambda: expanded(article_id), timeout=60)
    assert article.body == "My Corporation ships on Monday."
    assert article.last_expanded_at is not None
    # Only the id travelled: the worker read the article itself.
    [headers] = published
    # The worker writes STARTED and SUCCESS with its next batch of writes (taskconsole.writeback);
    # a batch written while the task ran holds STARTED alone.
    row = wait_for(
        lambda: TaskResult.objects.filter(task_id=headers["id"], status="SUCCESS").first(),
        timeout=30,
    )
    assert json.loads(row.task_args) == f"({article_id},)"
    assert json.loads(row.result)["replacements"] == 1
    # The worker logs each task it receives: the rollback test relies on that.
    assert any(TASK_NAME in line and "received" in line for line in celery_worker.lines)


def test_editing_through_the_page_expands_the_new_text(writer: Client, celery_worker) -> None:
    make_abbreviation()
    article = make_article(title="Launch", body="Nothing yet.")
    response = writer.post(
        reverse("articles:edit", args=[article.pk]),
        {"title": "Launch", "body": "MyCorp ships today."},
    )
    assert response.status_code == 302
    assert wait_for(lambda: expanded(article.pk), timeout=60).body == "My Corporation ships today."


def test_the_admin_action_gets_the_selected_articles_expanded(
    client: Client, celery_worker
) -> None:
    make_abbreviation()
    first = make_article(body="MyCorp one")
    second = make_article(body="MyCorp two")
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    client.post(
        reverse("admin:articles_article_changelist"),
        {"action": "expand_abbreviations", "_selected_action": [first.pk, second.pk]},
    )
    assert wait_for(lambda: expanded(first.pk), timeout=60).body == "My Corporation one"
    assert wait_for(lambda: expanded(second.pk), timeout=60).body == "My Corporation two"


def test_a_rolled_back_save_sends_nothing(writer: Client, celery_worker, published) -> None:
    """The view fails after queueing, inside its transaction: the article and task vanish."""
    make_abbreviation()
    real_queue_expansion = services.queue_expansion

    def queue_then_fail(article_ids: list[int]) -> None:
        real_queue_expansion(article_ids)
        raise RuntimeError("the rest of the request failed")

    mark = len(celery_worker.lines)
    with (
        mock.patch.object(services, "queue_expansion", queue_then_fail),
        pytest.raises(RuntimeError),
    ):
        writer.post(reverse("articles:create"), {"title": "Doomed", "body": "MyCorp"})
    assert not Article.objects.exists()
    assert published == []

    # Anything published before this sentinel is on the same FIFO queue ahead of it, so the
    # worker would have received it first.
    assert ping.delay().get(timeout=60) == "pong"
    assert [headers["task"] for headers in published] == ["app.tasks.ping"]
    assert not any(TASK_NAME in line for line in celery_worker.lines[mark:])
    assert not TaskResult.objects.filter(task_name=TASK_NAME).exists()


HELD_QUEUE = "articles_held"


def test_an_edit_between_dispatch_and_run_is_not_overwritten(celery_worker, start_worker) -> None:
    """The tutorial's busy queue: the task waits while another author edits the article."""
    make_abbreviation()
    article = make_article(title="Launch", body="MyCorp ships on Monday.")
    # No worker consumes this queue yet, so the task cannot run before the edit.
    result = expand_abbreviations.apply_async((article.pk,), queue=HELD_QUEUE)

    article.body = "MyCorp ships on Tuesday, says Bob."
    article.save(update_fields=["body", "updated_at"])

    start_worker(queues=HELD_QUEUE, concurrency=1, name="articles-held")
    assert result.get(timeout=60) == {
        "article_id": article.pk,
        "result": "expanded",
        "replacements": 1,
        "attempts": 1,
    }
    fresh = Article.objects.get(pk=article.pk)
    assert fresh.body == "My Corporation ships on Tuesday, says Bob."
    assert fresh.title == "Launch"


def test_launched_from_the_task_console_the_article_is_expanded(
    client: Client, celery_worker
) -> None:
    make_abbreviation()
    article = make_article(body="MyCorp ships on Monday.")
    user = make_user(
        "articles.change_article", "taskconsole.view_taskrecord", "taskconsole.launch_task"
    )
    client.force_login(user)
    response = client.post(
        "/console/api/launch/",
        json.dumps({"task": TASK_NAME, "arguments": {"article_id": article.pk}}),
        content_type="application/json",
    )
    assert response.status_code == 201
    task_id = response.json()["task_id"]
    assert wait_for(lambda: expanded(article.pk), timeout=60).body == (
        "My Corporation ships on Monday."
    )
    record = wait_for(
        lambda: TaskRecord.objects.filter(task_id=task_id, status=TaskStatus.SUCCESS).first(),
        timeout=60,
    )
    assert (record.name, record.origin, record.owner) == (TASK_NAME, Origin.CONSOLE, user)
    assert record.worker.startswith("main-")
    assert json.loads(record.result)["replacements"] == 1
    detail = client.get(f"/console/api/tasks/{task_id}/").json()
    assert detail["status"] == TaskStatus.SUCCESS
    assert detail["kwargs"] == {"article_id": article.pk}
