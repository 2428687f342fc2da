from __future__ import annotations

from unittest import mock

import pytest
from amqp.exceptions import ChannelError
from celery.signals import after_task_publish
from kombu.exceptions import EncodeError

from articles.services import ExpansionConflict
from articles.tasks import expand_abbreviations
from myproject.celery import app as celery_app

from .factories import make_abbreviation, make_article


def queue_length(name: str) -> int:
    with celery_app.connection_for_write() as conn:
        try:
            return conn.default_channel.queue_declare(queue=name, passive=True).message_count
        except ChannelError:  # Redis drops an empty list: no queue left means no message.
            return 0


@pytest.mark.django_db
def test_an_article_object_cannot_be_sent_only_its_id(broker_url: str) -> None:
    # The tutorial's stale-object bug needs the object in the message; JSON refuses it.
    article = make_article()
    published: list[str] = []

    def record(sender: str, **kwargs: object) -> None:
        published.append(sender)

    after_task_publish.connect(record)
    before = queue_length("default")
    try:
        with pytest.raises(EncodeError, match="Article is not JSON serializable"):
            expand_abbreviations.delay(article)
    finally:
        after_task_publish.disconnect(record)
    assert published == []
    assert queue_length("default") == before


@pytest.mark.django_db
def test_the_task_expands_by_id_and_returns_the_outcome() -> None:
    make_abbreviation()
    article = make_article(body="MyCorp")
    result = expand_abbreviations.apply(args=[article.pk])
    assert result.get() == {
        "article_id": article.pk,
        "result": "expanded",
        "replacements": 1,
        "attempts": 1,
    }


def test_a_conflict_is_retried_later() -> None:
    with mock.patch(
        "articles.tasks.expand_article", side_effect=ExpansionConflict("busy")
    ) as expand:
        result = expand_abbreviations.apply(args=[1])
    # Eager retries run at once: the first try and max_retries more, then the error.
    assert expand.call_count == 1 + expand_abbreviations.max_retries
    assert isinstance(result.result, ExpansionConflict)
