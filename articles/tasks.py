from __future__ import annotations

from celery import shared_task

from reliability.delivery import IdempotentTask

from .services import ExpansionConflict, expand_article


# An id, never the Article: the row is read when the task runs, so it sees the latest edit.
# A conflict means someone is editing right now; each edit queues its own expansion too, so a
# few spaced-out retries are plenty. Idempotent (the write is a compare-and-swap of the body):
# never lost when a worker dies, and a second copy from the outbox sweeper is skipped.
@shared_task(
    base=IdempotentTask,
    autoretry_for=(ExpansionConflict,),
    max_retries=3,
    retry_backoff=2,
    retry_backoff_max=30,
    soft_time_limit=45,
    time_limit=60,
)
def expand_abbreviations(article_id: int) -> dict[str, object]:
    return expand_article(article_id).as_dict()
