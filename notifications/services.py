"""What notifications do: create them, dispatch them in batches, send a batch, record outcomes.

The tasks in tasks.py only call these functions and add the retry policy.
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, TypeVar

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.core.mail.utils import DNS_NAME
from django.db import connections, router, transaction
from django.db.models import Count, F, Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from operations.broker_errors import BROKER_ERRORS, unanswered
from operations.text import written_in
from taskconsole.signals import Cancellation

from .models import Delivery, Notification

if TYPE_CHECKING:
    from celery.result import GroupResult
    from django.contrib.auth.models import AbstractBaseUser
    from django.core.mail.backends.base import BaseEmailBackend
    from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger(__name__)

# Rows per INSERT when recipients are stored: a 100,000-recipient notification is 100
# statements, not one enormous one nor 100,000 small ones.
INSERT_CHUNK_SIZE = 1000

Status = Notification.Status
T = TypeVar("T")
DeliveryStatus = Delivery.Status
#: Called with (recipients handled, recipients to handle) while a batch is being sent.
Progress = Callable[[int, int], None]


class TemporaryDeliveryError(Exception):
    """Some recipients of a batch could not be sent for a reason that may pass (4xx, network).

    It carries only text, so it survives the JSON result backend, which the SMTP exceptions
    (their arguments hold bytes) would not.
    """


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


# Creating ---------------------------------------------------------------------------------------


def add_recipients(
    notification: Notification, emails: Iterable[str], chunk_size: int = INSERT_CHUNK_SIZE
) -> None:
    """Store one pending Delivery per address, in INSERTs of chunk_size rows.

    An address the notification already has is skipped, not duplicated.
    """
    for chunk in chunked(emails, chunk_size):
        Delivery.objects.bulk_create(
            [Delivery(notification_id=notification.pk, email=email) for email in chunk],
            batch_size=chunk_size,
            ignore_conflicts=True,
        )


def create_notification(
    *,
    subject: str,
    body: str,
    recipients: Iterable[str],
    created_by: AbstractBaseUser | None = None,
) -> Notification:
    """A draft notification and its recipients, stored together or not at all."""
    with transaction.atomic():
        notification = Notification.objects.create(
            subject=subject,
            body=body,
            created_by=created_by,
            # A request's language (LocaleMiddleware), else the site's.
            language=translation.get_language() or "",
        )
        add_recipients(notification, recipients)
    return notification


def in_language_of(notification_id: int) -> translation.override:
    """The author's language, for what the workers write (their own is the site's)."""
    language = (
        Notification.objects.filter(pk=notification_id).values_list("language", flat=True).first()
    )
    return written_in(language)


# Dispatching ------------------------------------------------------------------------------------


def dispatch(notification: Notification) -> bool:
    """Queue the notification's unsent recipients once the current transaction commits.

    The web request publishes a single message; the worker splits the recipients into batches
    (enqueue_batches), so a long list costs the request no more than a short one.
    Returns False, changing nothing, when the notification has no recipient left to send.
    """
    has_unsent = notification.deliveries.filter(
        status=DeliveryStatus.PENDING, batch_task_id=""
    ).exists()
    if not has_unsent:
        return False
    Notification.objects.filter(pk=notification.pk).update(
        status=Status.QUEUED, failure_reason="", finished_at=None, updated_at=timezone.now()
    )
    notification.status = Status.QUEUED
    notification.failure_reason = ""
    notification.finished_at = None
    transaction.on_commit(lambda: _publish_dispatch(notification.pk))
    return True


def _publish_dispatch(notification_id: int) -> None:
    from .tasks import dispatch_notification

    try:
        dispatch_notification.delay(notification_id)
    except BROKER_ERRORS as exc:
        # The notification and its recipients are committed: keep them as a draft that says
        # why, so it can be sent once the broker is back. A broker that did not answer in time
        # may have the message and send it when it answers again; sending it again is safe
        # all the same, since a recipient is handed to one batch only.
        if unanswered(exc):
            reason = _(
                "The task queue did not answer in time: the notification may still be sent. "
                "Sending it again sends no recipient twice."
            )
        else:
            reason = _("Not queued: the task queue was unavailable. Send it again.")
        Notification.objects.filter(pk=notification_id, status=Status.QUEUED).update(
            status=Status.DRAFT, failure_reason=reason, updated_at=timezone.now()
        )
        raise


def enqueue_batches(
    notification: Notification | int, batch_size: int | None = None
) -> GroupResult | None:
    """Publish one send_batch_notifications task per batch_size unsent recipients, as a group.

    The group is published over one broker connection. Only pending recipients that no batch
    has claimed are included, so calling this again (a second dispatch, a retried dispatch)
    never hands a recipient to two batches. Returns None when there was nothing to send.
    """
    from celery import group

    from .tasks import send_batch_notifications

    notification_id = notification if isinstance(notification, int) else notification.pk
    size = batch_size or settings.NOTIFICATIONS_BATCH_SIZE
    ids = (
        Delivery.objects.filter(
            notification_id=notification_id, status=DeliveryStatus.PENDING, batch_task_id=""
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    batches = [
        send_batch_notifications.s(notification_id, chunk)
        for chunk in chunked(ids.iterator(chunk_size=10 * INSERT_CHUNK_SIZE), size)
    ]
    if not batches:
        refresh_status(notification_id)
        return None
    Notification.objects.filter(
        pk=notification_id, status__in=[Status.DRAFT, Status.QUEUED]
    ).update(status=Status.SENDING, updated_at=timezone.now())
    logger.info(
        "Notification %s: %d recipients in %d batches",
        notification_id,
        sum(len(signature.args[1]) for signature in batches),
        len(batches),
    )
    return group(batches).apply_async()


def retry_failed(notification: Notification) -> int:
    """Give the failed recipients another chance; returns how many were queued again."""
    count = notification.deliveries.filter(status=DeliveryStatus.FAILED).update(
        status=DeliveryStatus.PENDING, batch_task_id=""
    )
    if count:
        dispatch(notification)
    return count


def send_stored(notification_id: int, *, retry_failed_recipients: bool = False) -> bool:
    """Queue a stored notification as the page's Send button does; False if nobody was waiting.

    For callers that hold only an id (the task console's launch). With
    retry_failed_recipients, the recipients that failed are given another chance instead.
    """
    notification = Notification.objects.filter(pk=notification_id).first()
    if notification is None:
        raise Notification.DoesNotExist(
            _("There is no notification with id %(id)s.") % {"id": notification_id}
        )
    # Published when this block commits, as from the page.
    with transaction.atomic():
        if retry_failed_recipients:
            return retry_failed(notification) > 0
        return dispatch(notification)


# Sending ----------------------------------------------------------------------------------------


@dataclass
class BatchOutcome:
    sent: int = 0
    failed: int = 0
    retrying: int = 0
    # Recipients hit by a temporary error on this try (retrying now, or failed on the last try).
    temporary: int = 0
    last_temporary_error: str = ""

    def as_dict(self) -> dict[str, int]:
        return {"sent": self.sent, "failed": self.failed, "retrying": self.retrying}

    def gave_up(self, delivery_ids: list[int], reason: str, *, last_try: bool) -> None:
        """Record a temporary failure: retrying, or failed when no try is left.

        It counts as a try for each of them, even if their message never reached the server
        (the connection was refused, broke before their turn, or time ran out).
        """
        status = DeliveryStatus.FAILED if last_try else DeliveryStatus.RETRYING
        _record(delivery_ids, status, reason)
        if last_try:
            self.failed += len(delivery_ids)
        else:
            self.retrying += len(delivery_ids)
        self.temporary += len(delivery_ids)
        self.last_temporary_error = reason


def send_batch(
    notification_id: int,
    delivery_ids: list[int],
    *,
    claim: str,
    last_try: bool,
    progress: Progress | None = None,
) -> BatchOutcome:
    """Send the notification to the batch's unsent recipients over one SMTP connection.

    `claim` is the batch task's id, which its retries keep: the batch first claims its
    recipients with it, so a recipient claimed by another batch is left to that batch.
    Each recipient is marked sent right after the server accepts its message, so a retry
    sends only to those still unsent. A permanent refusal (5xx) fails that recipient and the
    batch goes on. A temporary one (4xx) marks the recipient retrying and the batch goes on;
    a broken connection marks every recipient not yet sent retrying and stops. Either way
    TemporaryDeliveryError is raised at the end, for the task to retry; on the last try those
    recipients are marked failed instead, and the error is still raised so the task's result
    says why. `progress(handled, total)` is told how far the batch got, recipient by recipient.

    Every recipient this try handles has its outcome recorded and its attempts counted in one
    UPDATE, whatever the outcome: sent, refused, or given up on before its message could be
    offered. So after the first try and max_retries retries a failed recipient shows them all.
    """
    outcome = BatchOutcome()
    (
        Delivery.objects.filter(
            pk__in=delivery_ids,
            notification_id=notification_id,
            status__in=Delivery.UNSENT,
        )
        .filter(Q(batch_task_id="") | Q(batch_task_id=claim))
        .update(batch_task_id=claim)
    )
    remaining = list(
        Delivery.objects.filter(
            pk__in=delivery_ids, batch_task_id=claim, status__in=Delivery.UNSENT
        ).order_by("-pk")
    )
    notification = Notification.objects.filter(pk=notification_id).first()
    if notification is None:
        return outcome
    if remaining:
        Notification.objects.filter(
            pk=notification_id, status__in=[Status.DRAFT, Status.QUEUED]
        ).update(status=Status.SENDING, updated_at=timezone.now())
        _send_over_one_connection(
            notification, remaining, outcome, last_try=last_try, progress=progress
        )
    refresh_status(notification_id)
    if outcome.temporary:
        raise TemporaryDeliveryError(
            ngettext(
                "%(count)d recipient could not be sent: %(error)s",
                "%(count)d recipients could not be sent: %(error)s",
                outcome.temporary,
            )
            % {"count": outcome.temporary, "error": outcome.last_temporary_error}
        )
    return outcome


def _send_over_one_connection(
    notification: Notification,
    remaining: list[Delivery],
    outcome: BatchOutcome,
    *,
    last_try: bool,
    progress: Progress | None = None,
) -> None:
    """Send to each delivery of `remaining` (in reverse order: it is popped from the end)."""
    connection = get_connection()
    in_flight: Delivery | None = None
    total = len(remaining)
    try:
        connection.open()
        while remaining:
            if progress is not None:
                progress(total - len(remaining), total)
            in_flight = remaining.pop()
            try:
                connection.send_messages([_message(notification, in_flight, connection)])
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException) as exc:
                # The server answered, so the connection is still good for the next one.
                delivery, in_flight = in_flight, None
                code, reason = _describe_refusal(exc)
                if 500 <= code < 600:
                    _record([delivery.pk], DeliveryStatus.FAILED, reason)
                    outcome.failed += 1
                else:
                    outcome.gave_up([delivery.pk], reason, last_try=last_try)
                continue
            except ValueError as exc:
                # An address Django cannot put in a header: no retry will change that.
                delivery, in_flight = in_flight, None
                _record([delivery.pk], DeliveryStatus.FAILED, str(exc))
                outcome.failed += 1
                continue
            # Recorded at once, so a retry of this batch cannot send it again.
            _record_sent(in_flight.pk)
            in_flight = None
            outcome.sent += 1
        if progress is not None:
            progress(total, total)
    except (OSError, SoftTimeLimitExceeded) as exc:
        # The connection is gone, or was never made (refused), or time is up: nobody left in
        # this batch can be sent now. This try still counts for each of them.
        unsent = remaining if in_flight is None else [*remaining, in_flight]
        outcome.gave_up([d.pk for d in unsent], _describe(exc), last_try=last_try)
    finally:
        try:
            connection.close()
        except (OSError, smtplib.SMTPException):
            logger.warning("Notification %s: closing the SMTP connection failed", notification.pk)


def _message(
    notification: Notification, delivery: Delivery, connection: BaseEmailBackend
) -> EmailMessage:
    return EmailMessage(
        subject=notification.subject,
        body=notification.body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[delivery.email],
        connection=connection,
        # The same id on every try: should a copy ever go out twice, mail clients show one.
        headers={
            "Message-ID": f"<notification-{notification.pk}.{delivery.pk}@{DNS_NAME}>",
            "X-Notification-ID": str(notification.pk),
        },
    )


def _record(delivery_ids: list[int], status: str, error: str) -> None:
    """Record one try's outcome for these recipients: the status, the error, one more attempt."""
    changes: dict[str, object] = {
        "status": status,
        "last_error": error,
        "attempts": F("attempts") + 1,
    }
    if status == DeliveryStatus.SENT:
        changes["sent_at"] = timezone.now()
    Delivery.objects.filter(pk__in=delivery_ids).update(**changes)


def _record_sent(delivery_id: int) -> None:
    """`_record([delivery_id], SENT, "")`: the same UPDATE and commit, its SQL
    built once. It runs once per recipient: building it through the ORM each time was half of
    a batch's CPU, ten times what SQLite took to run it."""
    connection = connections[router.db_for_write(Delivery)]
    statement = _sent_statements.get(connection.vendor)
    if statement is None:
        statement = _sent_statements[connection.vendor] = _sent_statement(connection)
    sent_at = Delivery._meta.get_field("sent_at").get_db_prep_save(timezone.now(), connection)
    with connection.cursor() as cursor:
        cursor.execute(statement, [DeliveryStatus.SENT, "", sent_at, delivery_id])


_sent_statements: dict[str, str] = {}


def _sent_statement(connection: BaseDatabaseWrapper) -> str:
    quote = connection.ops.quote_name
    column = {f.name: quote(f.column) for f in Delivery._meta.concrete_fields}
    return (
        f"UPDATE {quote(Delivery._meta.db_table)} SET {column['status']} = %s, "
        f"{column['last_error']} = %s, {column['attempts']} = {column['attempts']} + 1, "
        f"{column['sent_at']} = %s WHERE {column['id']} = %s"
    )


def _describe_refusal(
    exc: smtplib.SMTPRecipientsRefused | smtplib.SMTPResponseException,
) -> tuple[int, str]:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, message = next(iter(exc.recipients.values()), (0, b""))
    else:
        code, message = exc.smtp_code, exc.smtp_error
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return code, f"{code} {message}".strip()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SoftTimeLimitExceeded):
        return _("The batch ran out of time; the rest is sent on the next try.")
    if isinstance(exc, smtplib.SMTPResponseException):
        return _describe_refusal(exc)[1]
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# Cancelled --------------------------------------------------------------------------------------

DISPATCH_TASK = "notifications.tasks.dispatch_notification"
BATCH_TASK = "notifications.tasks.send_batch_notifications"


def record_cancelled(
    notification_id: int, delivery_ids: list[int] | None, cancellation: Cancellation
) -> int:
    """A task that was to send to these recipients was cancelled (or expired, or stopped): they
    fail with that reason, and the notification finishes once none is left to send. Without
    delivery_ids (the dispatch task), every recipient no batch has claimed. Returns how many.

    A failed recipient can be sent again with the page's "retry failed".
    """
    unsent = Delivery.objects.filter(notification_id=notification_id, status__in=Delivery.UNSENT)
    if delivery_ids is None:
        # The dispatch: only while it has not run (it makes the notification "sending"), or
        # the recipients of batches it did queue would be failed under them.
        if not Notification.objects.filter(pk=notification_id, status=Status.QUEUED).exists():
            return 0
        unsent = unsent.filter(batch_task_id="")
    elif cancellation.terminated:
        unsent = unsent.filter(pk__in=delivery_ids).filter(
            Q(batch_task_id="") | Q(batch_task_id=cancellation.task_id)
        )
    else:
        # A batch claims its recipients as it starts: claimed ones are being sent (a worker
        # may have started it a moment before the console's word).
        unsent = unsent.filter(pk__in=delivery_ids, batch_task_id="")
    with in_language_of(notification_id):
        reason = cancellation.reason(
            _("Its task expired before a worker started it."),
            _("Its task was stopped while it ran, before this recipient was sent."),
            _("Its task was cancelled before this recipient was sent."),
        )
    count = unsent.update(status=DeliveryStatus.FAILED, last_error=reason)
    if count:
        refresh_status(notification_id)
    return count


def on_cancelled(cancellation: Cancellation) -> None:
    """taskconsole's cancellations of the dispatch and of the batches."""
    args = cancellation.args
    batch = cancellation.name == BATCH_TASK
    ids = args[1] if batch and len(args) > 1 else None
    if not args or not isinstance(args[0], int) or (batch and not _ints(ids)):
        # Arguments the console could not store whole (clipped): nothing to go by.
        logger.warning(
            "Cancelled %s[%s]: its arguments are not known", cancellation.name, cancellation.task_id
        )
        return
    record_cancelled(args[0], ids, cancellation)


def _ints(values: object) -> bool:
    return isinstance(values, list) and all(isinstance(v, int) for v in values)


# Outcomes ---------------------------------------------------------------------------------------


def refresh_status(notification_id: int) -> None:
    """Set the notification's final status once none of its recipients is left to send.

    Every batch calls this after its own writes are committed, so whichever batch finishes
    last sees all outcomes. Until then it does nothing: a final status is never reached early
    and, once reached, never overwritten by a batch that looked earlier.
    """
    counts = Delivery.objects.filter(notification_id=notification_id).aggregate(
        total=Count("pk"),
        sent=Count("pk", filter=Q(status=DeliveryStatus.SENT)),
        failed=Count("pk", filter=Q(status=DeliveryStatus.FAILED)),
        unsent=Count("pk", filter=Q(status__in=Delivery.UNSENT)),
    )
    if counts["unsent"]:
        return
    failed, total = counts["failed"], counts["total"]
    if total == 0:
        status, reason = Status.FAILED, _("The notification has no recipients.")
    elif failed == 0:
        status, reason = Status.SENT, ""
    else:
        status = Status.FAILED if failed == total else Status.PARTIAL
        last_error = (
            Delivery.objects.filter(notification_id=notification_id, status=DeliveryStatus.FAILED)
            .exclude(last_error="")
            .order_by("-pk")
            .values_list("last_error", flat=True)
            .first()
        )
        reason = ngettext(
            "%(failed)d of %(total)d recipient could not be sent. Last error: %(error)s",
            "%(failed)d of %(total)d recipients could not be sent. Last error: %(error)s",
            total,
        ) % {"failed": failed, "total": total, "error": last_error or _("unknown")}
    now = timezone.now()
    Notification.objects.filter(pk=notification_id).exclude(status=Status.DRAFT).update(
        status=status, failure_reason=reason, finished_at=now, updated_at=now
    )
