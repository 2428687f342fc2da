from __future__ import annotations

from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from articles.models import Abbreviation, Article, ExpansionStatus

from .factories import make_abbreviation, make_article

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:articles_article_changelist")


@pytest.fixture
def delay():
    # The outbox publishes with apply_async((article_id,), {}, task_id=..., retry=False).
    with mock.patch("articles.tasks.expand_abbreviations.apply_async") as delay:
        yield delay


@pytest.fixture
def admin(client: Client) -> Client:
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    return client


def test_the_action_queues_each_selected_article(
    admin: Client, delay, django_capture_on_commit_callbacks
) -> None:
    first, second, _other = make_article(), make_article(), make_article()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(
            CHANGELIST,
            {"action": "expand_abbreviations", "_selected_action": [first.pk, second.pk]},
            follow=True,
        )
    assert "Queued the expansion of 2 articles." in response.content.decode()
    assert sorted(call.args[0] for call in delay.call_args_list) == [(first.pk,), (second.pk,)]
    pending = Article.objects.filter(expansion_status=ExpansionStatus.PENDING)
    assert set(pending) == {first, second}


def test_adding_in_the_admin_sets_the_author_and_queues(
    admin: Client, delay, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(
            reverse("admin:articles_article_add"), {"title": "From admin", "body": "MyCorp"}
        )
    assert response.status_code == 302
    article = Article.objects.get()
    assert article.author.username == "boss"
    assert [call.args[0] for call in delay.call_args_list] == [(article.pk,)]


def test_the_admin_refuses_an_abbreviation_that_would_expand_again(admin: Client) -> None:
    make_abbreviation("DB", "database")
    response = admin.post(
        reverse("admin:articles_abbreviation_add"),
        {"short_form": "RDBMS", "expansion": "relational DB system"},
    )
    assert response.status_code == 200
    assert "expanded again" in response.content.decode()
    assert Abbreviation.objects.count() == 1
