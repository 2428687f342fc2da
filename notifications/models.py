from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Count, Q
from django.utils.translation import gettext_lazy as _

# A line break in a subject would let the text add headers of its own; Django refuses to send
# such a message, so it is refused where it is typed instead.
no_line_breaks = RegexValidator(
    r"[\r\n]", inverse_match=True, message=_("The subject must fit on one line.")
)


class NotificationQuerySet(models.QuerySet):
    def with_counts(self) -> NotificationQuerySet:
        """Annotate each notification with its recipients counted by delivery status.

        The list page, the detail page, the JSON progress endpoint and the admin all read
        progress through this one query, so they never disagree.
        """
        status = Delivery.Status

        def count(*statuses: str) -> Count:
            return Count("deliveries", filter=Q(deliveries__status__in=statuses))

        # A GROUP BY query ignores Meta.ordering, so the order is repeated here.
        return self.order_by("-created_at", "-pk").annotate(
            recipient_count=Count("deliveries"),
            pending_count=count(status.PENDING),
            retrying_count=count(status.RETRYING),
            sent_count=count(status.SENT),
            failed_count=count(status.FAILED),
        )


class Notification(models.Model):
    """One email, written once and sent to many recipients (one Delivery each)."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        QUEUED = "queued", _("Queued")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        PARTIAL = "partial", _("Partly failed")
        FAILED = "failed", _("Failed")

    subject = models.CharField(_("subject"), max_length=255, validators=[no_line_breaks])
    body = models.TextField(_("body"))
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.DRAFT
    )
    failure_reason = models.TextField(
        _("failure reason"),
        blank=True,
        help_text=_("Why some or all recipients could not be sent the notification."),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="notifications",
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    language = models.CharField(
        _("language"),
        max_length=20,
        blank=True,
        help_text=_("Its author's language: the workers write the failure reason in it."),
    )

    objects = NotificationQuerySet.as_manager()

    class Meta:
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.subject

    @property
    def in_progress(self) -> bool:
        return self.status in {self.Status.QUEUED, self.Status.SENDING}

    @property
    def finished(self) -> bool:
        return self.status in {self.Status.SENT, self.Status.PARTIAL, self.Status.FAILED}


class Delivery(models.Model):
    """The notification's outcome for one recipient."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        RETRYING = "retrying", _("Retrying")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")

    # Not sent yet, and not given up on: what a batch still has to send.
    UNSENT = (Status.PENDING, Status.RETRYING)

    notification = models.ForeignKey(
        Notification,
        verbose_name=_("notification"),
        on_delete=models.CASCADE,
        related_name="deliveries",
    )
    email = models.EmailField(_("email address"), max_length=254)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.PENDING
    )
    # Counted on every try of its batch that handles it, whatever the outcome: a recipient
    # that failed after the first try and max_retries retries shows them all, even when the
    # connection was refused every time and the message never reached the server.
    attempts = models.PositiveIntegerField(
        _("attempts"),
        default=0,
        help_text=_(
            "How many times its batch tried to send the message (the first try and each "
            "retry), including tries on which the mail server could not be reached."
        ),
    )
    last_error = models.TextField(_("last error"), blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    batch_task_id = models.CharField(
        _("batch task id"),
        max_length=255,
        blank=True,
        help_text=_(
            "The batch task that has claimed this recipient. Only that task (and its retries, "
            "which keep its id) may send to it, so a recipient is never sent the notification "
            "twice."
        ),
    )

    class Meta:
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["notification", "email"], name="notifications_delivery_unique_email"
            ),
        ]
        indexes = [
            # Progress counts and the search for unsent recipients filter on both.
            models.Index(fields=["notification", "status"], name="notif_delivery_status_idx"),
        ]

    def __str__(self) -> str:
        return self.email
