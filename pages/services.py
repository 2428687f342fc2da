"""What the pages feature does; views, the admin and the tasks all call these functions.

The chain is the tutorial's good example: fetch_page → parse_page → store_page_info, each step
given the previous one's result, none waiting on another. The tasks hold only the retry and
time-limit policy.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_celery_results.models import TaskResult

from operations.broker_errors import BROKER_ERRORS, unanswered
from operations.text import sentences, written_in
from taskconsole.models import TaskRecord, TaskStatus
from taskconsole.signals import Cancellation

from . import client
from .models import PageInfo
from .parsing import UnparsableHTML, clean_text, decode_html, summarize

if TYPE_CHECKING:
    from celery.canvas import Signature
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

logger = logging.getLogger(__name__)

CHAIN_STEPS = (
    ("fetch_task_id", "pages.tasks.fetch_page"),
    ("parse_task_id", "pages.tasks.parse_page"),
    ("store_task_id", "pages.tasks.store_page_info"),
)


# Submitting -------------------------------------------------------------------------------


def submit_page(url: str, user: AbstractBaseUser | AnonymousUser | None) -> PageInfo:
    """Save a PageInfo for `url` and start its chain once the row is committed.

    The task ids are chosen here and saved with the row, so the chain is visible (and its
    parent/child links can be followed) from the moment the request ends, and no task has to
    write them back while another one is updating the same row.
    """
    with transaction.atomic():
        page = PageInfo.objects.create(
            url=url,
            created_by=user if user is not None and user.is_authenticated else None,
            # A request's language (LocaleMiddleware), else the site's.
            language=translation.get_language() or "",
            fetch_task_id=str(uuid.uuid4()),
            parse_task_id=str(uuid.uuid4()),
            store_task_id=str(uuid.uuid4()),
        )
        # The worker loads the row by id: before the commit it would not find it.
        transaction.on_commit(lambda: dispatch_chain(page))
    return page


def page_chain(page: PageInfo) -> Signature:
    """`fetch_page.s(id) | parse_page.s() | store_page_info.s(id)`, with the row's task ids.

    Any step that fails calls record_page_failure in the worker, so the row says why.
    """
    from .tasks import fetch_page, parse_page, record_page_failure, store_page_info

    workflow = (
        fetch_page.s(page.pk).set(task_id=page.fetch_task_id)
        | parse_page.s().set(task_id=page.parse_task_id)
        | store_page_info.s(page.pk).set(task_id=page.store_task_id)
    )
    return workflow.on_error(record_page_failure.s(page_id=page.pk))


def dispatch_chain(page: PageInfo) -> None:
    """Send the chain; if the broker refuses it, say so on the row and let the error through."""
    try:
        page_chain(page).apply_async()
    except Exception as exc:
        # The broker's or driver's own words (English, with addresses) go to the log; the row
        # keeps a sentence in the submitter's language.
        # One line, not a traceback: during an outage every submission would log one.
        logger.error("Could not queue the chain of PageInfo %s: %r", page.pk, exc)
        if unanswered(exc):
            # The broker may have the chain and run it once it answers: the row stays queued
            # rather than failed beside a fetch that then happens.
            raise
        with written_in(page.language):
            error = not_queued_error(exc)
        _update(
            page.pk,
            status=PageInfo.Status.FAILED,
            error=error,
            chain_sent=False,
            finished_at=timezone.now(),
        )
        raise


def not_queued_error(exc: BaseException) -> str:
    """Why the chain was not sent, in the active language, without the exception's text."""
    if isinstance(exc, BROKER_ERRORS):
        return _(
            "The fetch could not be queued: the task queue is unavailable. Fetch it again later."
        )
    return _("The fetch could not be queued. Fetch it again later.")


def fetch_again(page: PageInfo, user: AbstractBaseUser | AnonymousUser | None) -> PageInfo:
    """A new submission of the same URL; the earlier row and its outcome are kept."""
    return submit_page(page.url, user)


# The chain's steps (run by the workers) -----------------------------------------------------


def in_language_of(page_id: int) -> translation.override:
    """The submitter's language, for what a step writes (the worker's own is the site's)."""
    language = PageInfo.objects.filter(pk=page_id).values_list("language", flat=True).first()
    return written_in(language)


def _update(page_id: int, **fields: Any) -> None:
    # update() writes only the named columns: two steps never overwrite each other's fields.
    PageInfo.objects.filter(pk=page_id).update(updated_at=timezone.now(), **fields)


def fetch_page(page_id: int, attempt: int) -> dict[str, Any]:
    """Fetch the page of row `page_id`; the result is what parse_page receives (JSON)."""
    url = PageInfo.objects.values_list("url", flat=True).get(pk=page_id)
    _update(page_id, status=PageInfo.Status.FETCHING, attempts=attempt)
    return fetched_message(client.fetch(url))


def fetched_message(fetched: client.FetchedPage) -> dict[str, Any]:
    """The fetch as JSON-serialisable data; a body that is not HTML is left behind."""
    is_html = fetched.is_html
    return {
        # parse_page gets only this message: it writes its errors in this language.
        "language": translation.get_language() or "",
        "url": fetched.url,
        "final_url": fetched.final_url,
        "status_code": fetched.status_code,
        "content_type": fetched.content_type,
        "elapsed_ms": fetched.elapsed_ms,
        "redirects": list(fetched.redirects),
        "size_bytes": len(fetched.body),
        "is_html": is_html,
        "html": decode_html(fetched.body, fetched.charset) if is_html else None,
    }


def note_retry(page_id: int, exc: client.FetchError, *, attempt: int, countdown: float) -> None:
    _update(
        page_id,
        status_code=exc.status_code,
        error=_("Attempt %(attempt)d failed: %(reason)s Retrying in %(countdown)s s.")
        % {"attempt": attempt, "reason": exc.message, "countdown": round(countdown, 2)},
    )


def parse_fetched(fetched: dict[str, Any]) -> dict[str, Any]:
    """Title, description and links of a fetched HTML page; other bodies are not parsed."""
    info = {key: value for key, value in fetched.items() if key not in ("html", "language")}
    if fetched["is_html"]:
        summary = summarize(fetched["html"] or "", fetched["final_url"])
        info.update(title=summary.title, description=summary.description, links=summary.links)
    else:
        info.update(title="", description="", links=[])
    return info


def store_page_info(page_id: int, info: dict[str, Any]) -> None:
    _update(
        page_id,
        status=PageInfo.Status.DONE,
        status_code=info["status_code"],
        final_url=info["final_url"],
        redirects=info["redirects"],
        content_type=info["content_type"],
        is_html=info["is_html"],
        size_bytes=info["size_bytes"],
        elapsed_ms=info["elapsed_ms"],
        title=info["title"],
        description=info["description"],
        links=info["links"],
        error="",
        finished_at=timezone.now(),
    )


def record_failure(page_id: int, exc: BaseException, task_name: str = "") -> None:
    """Mark the row failed with a reason a person can act on."""
    fields: dict[str, Any] = {}
    if isinstance(exc, client.FetchError):
        reason = exc.message
        fields = {
            "status_code": exc.status_code,
            "final_url": exc.final_url[:2000],
            "content_type": exc.content_type,
            "elapsed_ms": exc.elapsed_ms,
        }
    elif isinstance(exc, UnparsableHTML):
        reason = str(exc)
    else:
        reason = _("%(task)s failed unexpectedly: %(type)s: %(error)s") % {
            "task": task_name.rsplit(".", 1)[-1] or _("A step"),
            "type": type(exc).__name__,
            "error": exc,
        }
    _update(
        page_id,
        status=PageInfo.Status.FAILED,
        error=clean_text(reason, 5000),
        finished_at=timezone.now(),
        **fields,
    )


def record_cancelled(cancellation: Cancellation) -> bool:
    """A step of a page's chain was cancelled (or expired, or stopped): the steps after it never
    run, so the page is failed with that reason rather than left fetching. True if it was."""
    step, task_id = cancellation.name, cancellation.task_id
    field = dict((name, field) for field, name in CHAIN_STEPS).get(step)
    if field is None:
        return False
    unfinished = PageInfo.objects.filter(**{field: task_id}).exclude(
        status__in=[PageInfo.Status.DONE, PageInfo.Status.FAILED]
    )
    page = unfinished.only("pk", "language", "status").first()
    if page is None or (not cancellation.terminated and _step_started(page, field, task_id)):
        # A worker may have started it a moment before the console's word: it runs on.
        return False
    with written_in(page.language):
        reason = cancellation.reason(
            _("The %(step)s step expired before a worker started it."),
            _("The %(step)s step was stopped while it ran."),
            _("The %(step)s step was cancelled before it ran."),
        )
        reason = sentences(
            reason % {"step": step.rsplit(".", 1)[-1]}, _("The steps after it did not run.")
        )
    return bool(
        unfinished.filter(pk=page.pk).update(
            status=PageInfo.Status.FAILED, error=reason, finished_at=timezone.now()
        )
    )


def _step_started(page: PageInfo, field: str, task_id: str) -> bool:
    """Whether the step has begun: the fetch marks the page fetching, the others store a state."""
    if field == "fetch_task_id":
        return page.status != PageInfo.Status.PENDING
    # (A worker that discards a revoked step stores REVOKED just before it says so.)
    return TaskResult.objects.filter(task_id=task_id).exclude(status="REVOKED").exists()


# Reading ----------------------------------------------------------------------------------


def visible_pages(user: AbstractBaseUser | AnonymousUser) -> QuerySet[PageInfo]:
    """A person sees their own submissions; with the view permission, everyone's."""
    pages = PageInfo.objects.select_related("created_by")
    if user.has_perm("pages.view_pageinfo"):
        return pages
    return pages.filter(created_by_id=user.pk)


#: A step of a chain the broker never took: no message of it exists (not a Celery state).
NOT_QUEUED = "NOT_QUEUED"
#: A step after one that failed or was cancelled: Celery never sends it (not a Celery state).
NOT_RUN = "NOT_RUN"
STATE_LABELS = {
    **dict(TaskStatus.choices),
    "PENDING": TaskStatus.QUEUED.label,
    NOT_QUEUED: gettext_lazy("Not queued"),
    NOT_RUN: gettext_lazy("Not run: an earlier step did not succeed"),
}
#: States after which the chain's next step is never sent.
_CHAIN_BROKEN = frozenset({"FAILURE", "REVOKED", "REJECTED", NOT_RUN})


def chain_steps(page: PageInfo) -> list[dict[str, Any]]:
    """Each task of the chain with its stored state, parent first."""
    rows = {
        row.task_id: row
        for row in TaskResult.objects.filter(task_id__in=page.task_ids).only(
            "task_id", "status", "date_started", "date_done", "worker"
        )
    }
    # Cancelled in the console while it waited: REVOKED there at once, in the results only
    # once a worker discards its message (maybe much later).
    cancelled = set(
        TaskRecord.objects.filter(
            task_id__in=[i for i in page.task_ids if i not in rows], status=TaskStatus.REVOKED
        ).values_list("task_id", flat=True)
    )
    steps: list[dict[str, Any]] = []
    parent_id = None
    previous = None
    for field, name in CHAIN_STEPS:
        task_id = getattr(page, field)
        if not task_id:
            continue
        row = rows.get(task_id)
        # No result yet: waiting in the queue, unless the chain never reached the broker or
        # stopped at an earlier step (Celery sends a step only once the one before succeeds).
        if previous in _CHAIN_BROKEN:
            waiting = NOT_RUN
        else:
            waiting = "PENDING" if page.chain_sent else NOT_QUEUED
        state = row.status if row else "REVOKED" if task_id in cancelled else waiting
        previous = state
        steps.append(
            {
                "name": name,
                "task_id": task_id,
                "parent_id": parent_id,
                "state": state,
                # The console's words for Celery's states.
                "state_label": STATE_LABELS.get(state, state),
                "worker": row.worker if row else None,
                "date_started": row.date_started if row else None,
                "date_done": row.date_done if row else None,
            }
        )
        parent_id = task_id
    return steps


def notice(page: PageInfo) -> str:
    """A plain-words note for outcomes that are neither an error nor a parsed page."""
    if page.status == PageInfo.Status.DONE and page.is_html is False:
        return _(
            "This is not an HTML page (%(type)s): it was fetched but not parsed, so it has "
            "no title, description or links."
        ) % {"type": page.content_type or _("no content type")}
    return ""


def page_snapshot(page: PageInfo) -> dict[str, Any]:
    """Everything the detail page and the JSON status endpoint show, from one place."""
    return {
        "id": page.pk,
        "url": page.url,
        "status": page.status,
        "status_label": str(page.get_status_display()),
        "finished": page.is_finished,
        "attempts": page.attempts,
        "status_code": page.status_code,
        "final_url": page.final_url,
        "redirects": page.redirects,
        "content_type": page.content_type,
        "is_html": page.is_html,
        "size_bytes": page.size_bytes,
        "elapsed_ms": page.elapsed_ms,
        "title": page.title,
        "description": page.description,
        "links": page.links,
        "error": page.error,
        "notice": notice(page),
        "created_at": page.created_at,
        "finished_at": page.finished_at,
        "chain": chain_steps(page),
    }
