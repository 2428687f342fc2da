from __future__ import annotations

from unittest import mock

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from kombu.exceptions import OperationalError

from articles.models import Article, ExpansionStatus
from articles.views import PAGE_SIZE

from .factories import make_article, make_user

pytestmark = pytest.mark.django_db

INDEX = reverse("articles:index")
CREATE = reverse("articles:create")


def edit_url(article: Article) -> str:
    return reverse("articles:edit", args=[article.pk])


@pytest.fixture
def delay():
    # The outbox publishes with apply_async((article_id,), {}, task_id=..., retry=False).
    with mock.patch("articles.tasks.expand_abbreviations.apply_async") as delay:
        yield delay


@pytest.fixture
def writer(client: Client) -> Client:
    client.force_login(make_user("articles.add_article", "articles.change_article"))
    return client


def test_every_page_needs_a_login(client: Client) -> None:
    article = make_article()
    for url in (INDEX, CREATE, edit_url(article)):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_writing_needs_the_permissions(client: Client, delay) -> None:
    article = make_article()
    client.force_login(make_user())
    assert client.get(INDEX).status_code == 200
    assert client.get(CREATE).status_code == 403
    assert client.post(CREATE, {"title": "T", "body": "B"}).status_code == 403
    assert client.post(edit_url(article), {"title": "T", "body": "B"}).status_code == 403
    assert Article.objects.count() == 1
    assert delay.call_count == 0


def test_the_list_shows_each_article_and_its_expansion_status(writer: Client) -> None:
    make_article(title="Launch plan", expansion_status=ExpansionStatus.PENDING)
    page = writer.get(INDEX).content.decode()
    assert "Launch plan" in page
    assert "Pending" in page
    assert CREATE in page


def test_the_list_is_paginated(writer: Client) -> None:
    Article.objects.bulk_create(Article(title=f"A{n}", body="b") for n in range(PAGE_SIZE + 1))
    assert "Page 2 of 2" in writer.get(INDEX, {"page": 2}).content.decode()


def test_the_forms_render_with_the_expansion_status(writer: Client) -> None:
    assert 'name="body"' in writer.get(CREATE).content.decode()
    article = make_article(body="MyCorp draft", expansion_status=ExpansionStatus.EXPANDED)
    page = writer.get(edit_url(article)).content.decode()
    assert "MyCorp draft" in page
    assert "Expanded" in page


def test_creating_sends_the_task_after_the_commit(
    writer: Client, delay, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = writer.post(CREATE, {"title": "Launch", "body": "MyCorp ships."})
    assert response.status_code == 302
    article = Article.objects.get()
    assert article.author is not None
    assert article.expansion_status == ExpansionStatus.PENDING
    assert len(callbacks) == 1
    assert [call.args[0] for call in delay.call_args_list] == [(article.pk,)]
    assert "being expanded" in str(next(iter(get_messages(response.wsgi_request))))


def test_editing_saves_only_the_form_fields_and_sends_the_task(
    writer: Client, delay, django_capture_on_commit_callbacks
) -> None:
    article = make_article(title="Old", body="MyCorp")
    with (
        mock.patch.object(Article, "save", autospec=True, side_effect=Article.save) as save,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = writer.post(edit_url(article), {"title": "Old", "body": "MyCorp, edited"})
    assert response.status_code == 302
    assert save.call_args.kwargs == {"update_fields": ["body", "updated_at"]}
    assert Article.objects.get(pk=article.pk).body == "MyCorp, edited"
    assert [call.args[0] for call in delay.call_args_list] == [(article.pk,)]


def test_bad_input_is_shown_again_and_nothing_is_saved_or_sent(writer: Client, delay) -> None:
    body = "A long body that must not be lost."
    response = writer.post(CREATE, {"title": "x" * 201, "body": body})
    assert response.status_code == 200
    page = response.content.decode()
    assert "at most 200 characters" in page
    assert body in page
    assert Article.objects.count() == 0
    assert delay.call_count == 0


# transaction=True: the view's own commit runs the send, before the view picks its message.
@pytest.mark.django_db(transaction=True)
def test_a_broker_that_is_down_keeps_the_article_and_says_so(writer: Client) -> None:
    with mock.patch(
        "articles.tasks.expand_abbreviations.apply_async", side_effect=OperationalError("down")
    ):
        response = writer.post(CREATE, {"title": "Kept", "body": "MyCorp"})
    assert response.status_code == 302
    article = Article.objects.get()
    assert article.title == "Kept"
    assert article.expansion_status == ExpansionStatus.NOT_QUEUED
    message = next(iter(get_messages(response.wsgi_request)))
    assert message.level_tag == "warning"
    assert "could not be queued" in str(message)


def test_the_pages_refuse_other_methods(writer: Client) -> None:
    assert writer.post(INDEX).status_code == 405
    assert writer.put(CREATE).status_code == 405


def test_an_unknown_article_is_404(writer: Client) -> None:
    assert writer.get(reverse("articles:edit", args=[987654])).status_code == 404
