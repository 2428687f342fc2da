"""Starting a job now, for the app's page and the admin alike."""

from __future__ import annotations

import uuid
from functools import partial

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from operations.broker_errors import BROKER_ERRORS, unanswered

from . import summaries
from .models import Job, MaintenanceRun, RunStatus
from .tasks import TASKS


def queue_run(
    job: Job, requested_by: AbstractBaseUser | AnonymousUser | None = None
) -> MaintenanceRun:
    """Record a queued run and send its task once the row is committed.

    The task id is chosen here, so the run links to its task result before the worker starts.
    """
    job = Job(job)
    user = requested_by if requested_by is not None and requested_by.is_authenticated else None
    task_id = str(uuid.uuid4())
    with transaction.atomic():
        run = MaintenanceRun.objects.create(job=job, requested_by=user, task_id=task_id)
        # Sent only after commit: a worker that started at once would not find the row yet.
        transaction.on_commit(partial(publish, job, run.pk, task_id))
    return run


def publish(job: Job, run_id: int, task_id: str) -> None:
    try:
        TASKS[job].apply_async(args=(run_id,), task_id=task_id)
    except BROKER_ERRORS as exc:
        if unanswered(exc):
            # The broker may have it and start the run once it answers: the run stays queued
            # (failing it would invite a second run); the 503 page says to look here first.
            raise
        # Not queued: say so on the run instead of leaving it "queued" for ever; the broker
        # middleware then answers the request with its 503 page (and logs the error).
        # Stored as a worker stores its summaries, in the site's language, with the fixed
        # text's key so each reader sees it in theirs; the broker's words stay in the details.
        with translation.override(settings.LANGUAGE_CODE):
            summary = _(summaries.NOT_STARTED)
        MaintenanceRun.objects.filter(pk=run_id).update(
            status=RunStatus.FAILED,
            finished_at=timezone.now(),
            summary=summary,
            details={
                summaries.FAILURE_KEY: summaries.NOT_STARTED,
                summaries.ERROR_KEY: f"{type(exc).__name__}: {exc}",
            },
        )
        raise


def queued_message(run: MaintenanceRun) -> str:
    return _("Queued “%(job)s” as run #%(id)d; its outcome shows here when the worker is done.") % {
        "job": run.get_job_display(),
        "id": run.pk,
    }


def unknown_job_message(job: str) -> str:
    return _("There is no maintenance job called “%(job)s”; nothing was started.") % {"job": job}
