from __future__ import annotations

import threading
from collections.abc import Callable
from unittest import mock

import pytest
from django.db import connection, transaction
from kombu.exceptions import OperationalError

from articles import services, text
from articles.models import Article, ExpansionStatus
from articles.services import ExpansionConflict, expand_article, queue_expansion
from taskconsole.signals import announce_cancelled

from .factories import make_abbreviation, make_article


def committed_elsewhere(change: Callable[[], object]) -> None:
    """Run change on another thread, hence another connection, and wait for its commit."""

    def run() -> None:
        try:
            change()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()


@pytest.mark.django_db
def test_expands_the_body_and_records_when() -> None:
    make_abbreviation()
    article = make_article(title="Launch", body="MyCorp ships. MyCorp!")
    outcome = expand_article(article.pk)
    assert outcome.as_dict() == {
        "article_id": article.pk,
        "result": "expanded",
        "replacements": 2,
        "attempts": 1,
    }
    fresh = Article.objects.get(pk=article.pk)
    assert fresh.body == "My Corporation ships. My Corporation!"
    assert fresh.title == "Launch"
    assert fresh.expansion_status == ExpansionStatus.EXPANDED
    assert fresh.last_expanded_at is not None
    # The task's write is not an edit by a person.
    assert fresh.updated_at == article.updated_at


@pytest.mark.django_db
def test_nothing_to_expand_leaves_the_body_and_marks_it_done() -> None:
    make_abbreviation()
    article = make_article(body="Nothing to see.")
    assert expand_article(article.pk).result == "unchanged"
    fresh = Article.objects.get(pk=article.pk)
    assert fresh.body == "Nothing to see."
    assert fresh.expansion_status == ExpansionStatus.EXPANDED


@pytest.mark.django_db
def test_an_article_deleted_before_the_run_is_skipped() -> None:
    assert expand_article(987654).as_dict() == {
        "article_id": 987654,
        "result": "deleted",
        "replacements": 0,
        "attempts": 1,
    }


# transaction=True: the concurrent edit is committed by another connection, as a second
# author's would be, between this run's read of the body and its write.
@pytest.mark.django_db(transaction=True)
def test_an_edit_committed_between_read_and_write_is_read_again_not_overwritten() -> None:
    make_abbreviation()
    article = make_article(body="MyCorp ships on Monday.")
    real_expand = text.expand
    edited = "MyCorp ships on Tuesday, says Bob."
    seen: list[str] = []

    def expand_then_someone_edits(body: str, expansions: dict[str, str]) -> tuple[str, int]:
        seen.append(body)
        if len(seen) == 1:
            committed_elsewhere(lambda: Article.objects.filter(pk=article.pk).update(body=edited))
        return real_expand(body, expansions)

    with mock.patch.object(text, "expand", expand_then_someone_edits):
        outcome = expand_article(article.pk)

    assert seen == ["MyCorp ships on Monday.", edited]
    assert outcome.attempts == 2
    assert Article.objects.get(pk=article.pk).body == "My Corporation ships on Tuesday, says Bob."


@pytest.mark.django_db(transaction=True)
def test_a_title_edited_between_read_and_write_survives() -> None:
    make_abbreviation()
    article = make_article(title="Draft", body="MyCorp ships.")
    real_expand = text.expand

    def expand_then_retitle(body: str, expansions: dict[str, str]) -> tuple[str, int]:
        committed_elsewhere(lambda: Article.objects.filter(pk=article.pk).update(title="Final"))
        return real_expand(body, expansions)

    with mock.patch.object(text, "expand", expand_then_retitle):
        assert expand_article(article.pk).attempts == 1

    fresh = Article.objects.get(pk=article.pk)
    assert (fresh.title, fresh.body) == ("Final", "My Corporation ships.")


@pytest.mark.django_db(transaction=True)
def test_an_article_edited_on_every_attempt_gives_up_without_writing() -> None:
    make_abbreviation()
    article = make_article(body="MyCorp v0")
    real_expand = text.expand
    versions = iter(range(1, 100))

    def expand_while_edited(body: str, expansions: dict[str, str]) -> tuple[str, int]:
        body_now = f"MyCorp v{next(versions)}"
        committed_elsewhere(lambda: Article.objects.filter(pk=article.pk).update(body=body_now))
        return real_expand(body, expansions)

    with mock.patch.object(text, "expand", expand_while_edited), pytest.raises(ExpansionConflict):
        expand_article(article.pk, max_attempts=3)

    fresh = Article.objects.get(pk=article.pk)
    assert fresh.body == "MyCorp v3"
    assert fresh.expansion_status == ExpansionStatus.NOT_REQUESTED


@pytest.mark.django_db
def test_queue_expansion_sends_after_the_commit_only(django_capture_on_commit_callbacks) -> None:
    first, second = make_article(), make_article()
    with (
        mock.patch("articles.tasks.expand_abbreviations.apply_async") as delay,
        django_capture_on_commit_callbacks(execute=True) as callbacks,
    ):
        queue_expansion([first.pk, second.pk])
        assert delay.call_count == 0
    assert len(callbacks) == 2
    assert [call.args[0] for call in delay.call_args_list] == [(first.pk,), (second.pk,)]
    statuses = set(Article.objects.values_list("expansion_status", flat=True))
    assert statuses == {ExpansionStatus.PENDING}


@pytest.mark.django_db(transaction=True)
def test_queue_expansion_in_a_rolled_back_transaction_sends_nothing() -> None:
    article = make_article()

    def queue_then_fail() -> None:
        with transaction.atomic():
            queue_expansion([article.pk])
            raise RuntimeError("rolled back")

    with mock.patch("articles.tasks.expand_abbreviations.apply_async") as delay:
        with pytest.raises(RuntimeError):
            queue_then_fail()
        assert delay.call_count == 0
    assert Article.objects.get(pk=article.pk).expansion_status == ExpansionStatus.NOT_REQUESTED


@pytest.mark.django_db
def test_a_broker_error_is_recorded_on_the_article() -> None:
    article = make_article(expansion_status=ExpansionStatus.PENDING)
    with mock.patch(
        "articles.tasks.expand_abbreviations.apply_async", side_effect=OperationalError("down")
    ):
        assert services.send_expansion(article.pk) is False
    assert Article.objects.get(pk=article.pk).expansion_status == ExpansionStatus.NOT_QUEUED


@pytest.mark.django_db
def test_a_cancelled_expansion_says_so_instead_of_pending() -> None:
    article = make_article()
    Article.objects.filter(pk=article.pk).update(expansion_status=ExpansionStatus.PENDING)
    other = make_article()
    Article.objects.filter(pk=other.pk).update(expansion_status=ExpansionStatus.EXPANDED)
    announce_cancelled("t1", services.EXPAND_TASK, [article.pk])
    announce_cancelled("t2", services.EXPAND_TASK, [other.pk])
    announce_cancelled("t3", "app.tasks.add", [article.pk + 1000])
    article.refresh_from_db()
    other.refresh_from_db()
    assert article.expansion_status == ExpansionStatus.CANCELLED
    assert article.get_expansion_status_display() == "Not expanded: its task was cancelled"
    # An expansion that already ran is not undone by a late word about another copy.
    assert other.expansion_status == ExpansionStatus.EXPANDED


@pytest.mark.django_db
def test_cancelling_an_older_expansion_leaves_the_newer_one_pending() -> None:
    from reliability import outbox

    article = make_article()
    older = outbox.enqueue(services.EXPAND_TASK, (article.pk,))
    newer = outbox.enqueue(services.EXPAND_TASK, (article.pk,))
    Article.objects.filter(pk=article.pk).update(expansion_status=ExpansionStatus.PENDING)

    announce_cancelled(older.task_id, services.EXPAND_TASK, [article.pk])
    article.refresh_from_db()
    assert article.expansion_status == ExpansionStatus.PENDING

    # Once the newer one started (the outbox forgets its arguments), cancelling the older
    # one's last copy says cancelled; the newer one's own write then says expanded.
    outbox.forget_args(newer.task_id)
    announce_cancelled(older.task_id, services.EXPAND_TASK, [article.pk])
    article.refresh_from_db()
    assert article.expansion_status == ExpansionStatus.CANCELLED
