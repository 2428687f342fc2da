"""Expanding an article's abbreviations, and queueing that work after the commit."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Literal

from django.db import transaction
from django.utils import timezone

from reliability import outbox
from reliability.models import OutboxMessage
from taskconsole.signals import Cancellation

from . import text
from .models import Abbreviation, Article, ExpansionStatus

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
"""Reads of the body before giving up when each write finds it changed since the read."""


class ExpansionConflict(Exception):
    """The body changed between every read and its write: the article is being edited."""


@dataclass(frozen=True)
class ExpansionOutcome:
    article_id: int
    result: Literal["expanded", "unchanged", "deleted"]
    """expanded: the body was rewritten; unchanged: nothing to expand; deleted: no article."""
    replacements: int
    """Abbreviations replaced in the body."""
    attempts: int
    """Reads needed: more than one means an edit was committed between a read and its write."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def expand_article(article_id: int, *, max_attempts: int = MAX_ATTEMPTS) -> ExpansionOutcome:
    """Expand the abbreviations of the article as it is now in the database.

    The write is a compare-and-swap: an UPDATE that only applies while the body is still the
    text this run read. An edit committed in between makes it match no row, and the body is
    read again, so an edit is never overwritten with stale text. Only the body and the
    expansion fields are written, so a concurrent change to the title survives too.
    """
    expansions = dict(Abbreviation.objects.values_list("short_form", "expansion"))
    for attempt in range(1, max_attempts + 1):
        body = Article.objects.filter(pk=article_id).values_list("body", flat=True).first()
        if body is None:
            return ExpansionOutcome(article_id, "deleted", 0, attempt)
        new_body, replacements = text.expand(body, expansions)
        changes: dict[str, object] = {
            "expansion_status": ExpansionStatus.EXPANDED,
            "last_expanded_at": timezone.now(),
        }
        if new_body != body:
            changes["body"] = new_body
        if Article.objects.filter(pk=article_id, body=body).update(**changes):
            result = "expanded" if replacements else "unchanged"
            return ExpansionOutcome(article_id, result, replacements, attempt)
        logger.info("Article %s changed while expanding it; reading it again", article_id)
    raise ExpansionConflict(
        f"Article {article_id} changed during each of {max_attempts} attempts to expand it."
    )


EXPAND_TASK = "articles.tasks.expand_abbreviations"


def queue_expansion(article_ids: Iterable[int]) -> None:
    """Mark the articles pending and send one task each once the transaction commits.

    Sending before the commit lets a worker look for a row that does not exist yet, or that
    a rollback removes; on_commit sends nothing at all if the transaction rolls back. Each
    task goes through the outbox (a row in this same transaction), so a broker that is down
    or restarts loses nothing: the outbox sweeper sends it once the broker is back.
    """
    ids = list(article_ids)
    Article.objects.filter(pk__in=ids).update(expansion_status=ExpansionStatus.PENDING)
    for article_id in ids:
        message = outbox.enqueue(EXPAND_TASK, (article_id,))
        # partial, not a lambda: a lambda in this loop would see only the last id.
        transaction.on_commit(partial(send_expansion, article_id, message.pk))


def send_expansion(article_id: int, message_id: int | None = None) -> bool:
    """Publish the article's outbox message; if the broker does not take it now, say so on
    the article (the outbox sweeper still sends it once the broker is back).

    Runs after the commit, so the article is saved whatever happens here: a broker that is
    down must not turn a saved article into an error page that suggests it was lost.
    """
    if message_id is None:
        message_id = outbox.enqueue(EXPAND_TASK, (article_id,)).pk
    if outbox.publish(message_id) or outbox.is_sent(message_id):
        return True
    logger.error(
        "Could not queue the expansion of article %s now; the outbox will send it later.",
        article_id,
    )
    Article.objects.filter(pk=article_id, expansion_status=ExpansionStatus.PENDING).update(
        expansion_status=ExpansionStatus.NOT_QUEUED
    )
    return False


def record_cancelled(article_id: int) -> bool:
    """The article's expansion task was cancelled (or expired, or stopped): say so instead of
    pending for ever. Saving the article, or the admin's action, queues a new one."""
    return bool(
        Article.objects.filter(
            pk=article_id,
            expansion_status__in=[ExpansionStatus.PENDING, ExpansionStatus.NOT_QUEUED],
        ).update(expansion_status=ExpansionStatus.CANCELLED)
    )


def on_cancelled(cancellation: Cancellation) -> None:
    """taskconsole's cancellations of the expansion task.

    An article saved twice has two expansions queued; cancelling the older one leaves the
    article pending while the newer one still waits to run.
    """
    if not cancellation.args or not isinstance(cancellation.args[0], int):
        return
    article_id = cancellation.args[0]
    if not another_expansion_waits(article_id, cancellation.task_id):
        record_cancelled(article_id)


def another_expansion_waits(article_id: int, task_id: str) -> bool:
    """An expansion of the article other than task_id is queued and has not started.

    The outbox keeps a task's arguments until its worker starts it (outbox.forget_args).
    """
    return (
        OutboxMessage.objects.filter(task_name=EXPAND_TASK, args=[article_id])
        .exclude(task_id=task_id)
        .exists()
    )
