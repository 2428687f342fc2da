"""The tutorial's good example, for real: fetch_page → parse_page → store_page_info.

    (fetch_page.s(page_id) | parse_page.s() | store_page_info.s(page_id)).apply_async()

No task waits on another (the tutorial's bad example called `.get()` inside a task; Celery
refuses that in a worker with "Never call result.get() within a task!"). The tasks take the
PageInfo id, never the row, and call pages.services; they hold only retry and time-limit policy.
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils.translation import gettext as _

from operations.text import written_in
from taskconsole.capture import OWNER_HEADER

from . import services
from .client import FetchError, FetchTimeout
from .parsing import UnparsableHTML

MAX_RETRIES = 3
RETRY_BACKOFF_MAX = 300.0


def retry_backoff_base() -> float:
    """Seconds before the first retry (settings.PAGES_RETRY_BACKOFF); each later one doubles."""
    return max(float(settings.PAGES_RETRY_BACKOFF), 0.0)


def retry_countdown(retries: int) -> float:
    """Exponential backoff: base, 2×base, 4×base… capped at RETRY_BACKOFF_MAX."""
    return min(retry_backoff_base() * 2**retries, RETRY_BACKOFF_MAX)


# Timeouts, dropped connections and 5xx are retried; 4xx, refused addresses, bad URLs, bodies
# over the limit and redirect loops would fail the same way again, so they are not.
# `throws`: an expected FetchError is logged as one line, without a traceback.
@shared_task(
    bind=True,
    max_retries=MAX_RETRIES,
    soft_time_limit=60,
    time_limit=90,
    throws=(FetchError,),
)
def fetch_page(self, page_id: int) -> dict[str, Any]:
    attempt = self.request.retries + 1
    # Errors are written, and raised, in the submitter's language.
    with services.in_language_of(page_id):
        try:
            return services.fetch_page(page_id, attempt)
        except FetchError as exc:
            if exc.retryable and self.request.retries < self.max_retries:
                countdown = retry_countdown(self.request.retries)
                services.note_retry(page_id, exc, attempt=attempt, countdown=countdown)
                raise self.retry(exc=exc, countdown=countdown) from exc
            raise
        except SoftTimeLimitExceeded as exc:
            raise FetchTimeout(
                _("The fetch ran past the task's time limit of %(seconds)s s.")
                % {"seconds": self.soft_time_limit}
            ) from exc


@shared_task(soft_time_limit=30, time_limit=45, throws=(UnparsableHTML,))
def parse_page(fetched: dict[str, Any]) -> dict[str, Any]:
    with written_in(fetched.get("language")):
        return services.parse_fetched(fetched)


@shared_task
def store_page_info(info: dict[str, Any], page_id: int) -> int:
    services.store_page_info(page_id, info)
    return page_id


@shared_task
def record_page_failure(request: Any, exc: BaseException, traceback: str, page_id: int) -> None:
    """Error callback of the chain: Celery calls it in the worker where a step failed.

    Its (request, exc, traceback) signature makes Celery call it in place with the real
    exception, rather than send it as a message; it is a task only so it can be a signature.
    """
    with services.in_language_of(page_id):
        services.record_failure(page_id, exc, task_name=getattr(request, "task", "") or "")


@shared_task(bind=True)
def submit_url(self: Task, url: str) -> int:
    """Fetch a URL from the task console: a new PageInfo row and its chain, as the page does.

    The row belongs to whoever launched this task, so it shows on their pages list; the
    chain's fetch_page is this task's child (parse_page is fetch_page's). Returns the row's id.
    """
    user_id = getattr(self.request, OWNER_HEADER, None)
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    return services.submit_page(url, user).pk
