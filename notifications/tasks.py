"""Celery tasks for notifications: ids in, services do the work, the tasks hold the policy."""

from __future__ import annotations

import logging
import uuid

from celery import shared_task
from django.conf import settings

from taskconsole import progress as console_progress

from . import services

logger = logging.getLogger(__name__)


def report_progress(current: int, total: int) -> None:
    """Show how far the task got on the task console: throttled there, never fatal here."""
    try:
        console_progress.report(current, total)
    except Exception:
        logger.warning("Could not report progress to the task console", exc_info=True)


@shared_task
def dispatch_notification(notification_id: int) -> int:
    """Split the notification's unsent recipients into batches and publish them as a group.

    Runs on a worker, so the web request publishes one message however long the list is.
    Returns the number of batches published.
    """
    with services.in_language_of(notification_id):
        result = services.enqueue_batches(notification_id)
    return 0 if result is None else len(result.results)


# 给任务设置最大重试次数: the tutorial's task, for real. A batch may safely run again (each
# recipient is marked sent the moment the server accepts it, and only unsent ones are sent),
# so it is acknowledged after it runs: a worker killed mid-batch hands it to another worker
# instead of leaving its recipients claimed and unsent forever. At worst the one message being
# sent at the moment of the kill goes out twice.
@shared_task(bind=True, max_retries=3, acks_late=True, reject_on_worker_lost=True)
def send_batch_notifications(self, notification_id: int, delivery_ids: list[int]) -> dict:
    """Send one batch; retry the recipients that failed for a temporary reason.

    A retry keeps this task's id, which is the claim on its recipients, and sends only to
    those not yet sent. After max_retries the service has recorded them as failed with the
    reason, and self.retry re-raises the error so the task's result shows it too.
    """
    try:
        # The failure reasons are written, and the error raised, in the author's language.
        with services.in_language_of(notification_id):
            outcome = services.send_batch(
                notification_id,
                delivery_ids,
                # Called directly (not through a worker) there is no task id to claim with.
                claim=self.request.id or str(uuid.uuid4()),
                last_try=self.request.retries >= self.max_retries,
                progress=report_progress,
            )
    except services.TemporaryDeliveryError as exc:
        raise self.retry(exc=exc, countdown=settings.NOTIFICATIONS_RETRY_COUNTDOWN) from exc
    return outcome.as_dict()


@shared_task
def send_notification(notification_id: int, retry_failed: bool = False) -> dict[str, object]:
    """Send a stored notification (the page's Send button, for the task console).

    Its recipients go out as dispatch_notification does it: this task's child, whose children
    are the batches.
    """
    queued = services.send_stored(notification_id, retry_failed_recipients=retry_failed)
    return {"notification_id": notification_id, "queued": queued}
