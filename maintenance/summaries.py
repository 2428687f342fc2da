"""What a run did, in words, from the figures the run keeps (its `details`).

A worker writes each run's summary in its own language (LANGUAGE_CODE): the admin's search
matches that text. The pages and the admin build it again from the run's details in the reader's
language (`MaintenanceRun.summary_display`). A failure's text is its error's, shown as stored,
as are the summaries of runs that keep no such details (written before they did).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop, ngettext

from operations.text import sentences

#: In a run's details: the figures below are all there (runs written before lack it).
VERSION_KEY = "summary_v"
VERSION = 1

#: In a failed run's details: which of these fixed texts its summary is, untranslated.
FAILURE_KEY = "failure"
TIME_LIMIT = gettext_noop(
    "Stopped by its time limit before it finished. Rows deleted until then stay "
    "deleted and are counted; the next run carries on."
)
WORKER_LOST = gettext_noop(
    "The worker stopped before this run finished (killed at its time limit, or it crashed)."
)
#: Written by the web process that asked for the run, not by a worker: its task never went out.
NOT_STARTED = gettext_noop("Not started: the task broker did not answer. Please try again.")
#: Its task was revoked (the task console's cancel, `celery control revoke`) or expired.
CANCELLED = gettext_noop("Cancelled before it started.")
STOPPED = gettext_noop(
    "Stopped while it ran. Rows deleted until then stay deleted; the next run carries on."
)
EXPIRED = gettext_noop("Its task expired before a worker started it.")
FAILURES = (TIME_LIMIT, WORKER_LOST, NOT_STARTED, CANCELLED, STOPPED, EXPIRED)
#: In a run that was not started: the broker's own error, for the admin (never translated).
ERROR_KEY = "error"


def clear_expired(details: dict[str, Any]) -> str:
    engine, sessions = details["session_engine"], details["sessions"]
    if not details["sessions_cleared"]:
        first = _("The session engine %(engine)s cannot clear expired sessions.") % {
            "engine": engine
        }
    elif sessions is None:
        first = _("Expired sessions cleared (%(engine)s does not count them).") % {"engine": engine}
    else:
        first = ngettext(
            "Deleted %(count)d expired session.", "Deleted %(count)d expired sessions.", sessions
        ) % {"count": sessions}
    if details["cache_backend"]:
        second = _(
            "Cache entries skipped: the default cache (%(backend)s) is not a database cache, "
            "and it expires entries by itself."
        ) % {"backend": details["cache_backend"]}
    else:
        count = details["cache_entries"]
        second = ngettext(
            "Deleted %(count)d expired cache entry from %(table)s.",
            "Deleted %(count)d expired cache entries from %(table)s.",
            count,
        ) % {"count": count, "table": details["cache_table"]}
    return sentences(first, second)


def backup_database(details: dict[str, Any]) -> str:
    return _(
        "Backed up the %(vendor)s database to %(path)s (%(size)s); it opens and holds "
        "%(tables)d tables. Kept the newest %(keep)d backup(s), deleted %(removed)d older one(s)."
    ) % {
        "vendor": details["vendor"],
        "path": details["path"],
        "size": filesizeformat(details["size"]),
        "tables": details["tables"],
        "keep": details["keep"],
        "removed": len(details["removed"]),
    }


def prune_results(details: dict[str, Any]) -> str:
    if details["days"] <= 0:
        results = _("Task results are kept forever (RESULTS_MAX_AGE_DAYS is 0).")
    else:
        results = _deleted_results(details)
    if details["record_days"] <= 0:
        records = _("Task console records are kept forever (TASKCONSOLE_MAX_AGE_DAYS is 0).")
    else:
        records = _(
            "Deleted %(records)d finished task console record(s) older than %(days)d days."
        ) % {"records": details["console_records"], "days": details["record_days"]}
    return sentences(results, records)


def _deleted_results(details: dict[str, Any]) -> str:
    return _(
        "Deleted %(tasks)d task result(s) and %(groups)d group result(s) finished before "
        "%(cutoff)s (older than %(days)d days), in batches of %(batch)d."
    ) % {
        "tasks": details["task_results"],
        "groups": details["group_results"],
        # In the reader's time zone, as the page's other times.
        "cutoff": timezone.localtime(datetime.fromisoformat(details["cutoff"])).strftime(
            "%Y-%m-%d %H:%M %Z"
        ),
        "days": details["days"],
        "batch": details["batch"],
    }


#: By job (maintenance.models.Job's values).
BY_JOB: dict[str, Callable[[dict[str, Any]], str]] = {
    "clear_expired": clear_expired,
    "backup_database": backup_database,
    "prune_results": prune_results,
}


def kept(details: dict[str, Any]) -> dict[str, Any]:
    """The details, marked as holding every figure their summary is made from."""
    return {**details, VERSION_KEY: VERSION}


def of_success(job: str, details: Any, stored: str) -> str:
    """A succeeded run's summary in the active language where its details allow, else as
    stored."""
    make = BY_JOB.get(job)
    if make is None or not isinstance(details, dict) or details.get(VERSION_KEY) != VERSION:
        return stored
    try:
        return make(details)
    except (KeyError, TypeError, ValueError):
        return stored


def of_failure(details: Any, stored: str) -> str:
    """A failed run's fixed text in the active language, else its error's text as stored."""
    if isinstance(details, dict) and details.get(FAILURE_KEY) in FAILURES:
        return _(details[FAILURE_KEY])
    return stored
