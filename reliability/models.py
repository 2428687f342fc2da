"""What reliability stores: the dispatch outbox, delivery counts, claims, dead letters, ledger."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class OutboxStatus(models.TextChoices):
    PENDING = "pending", _("Waiting for the broker")
    SENT = "sent", _("Sent to the broker")


class OutboxMessage(models.Model):
    """A task to publish, written in the same transaction as the rows it reads.

    Published right after commit; the sweeper re-sends whatever the broker has not taken.
    """

    task_id = models.CharField(_("task id"), max_length=255, unique=True)
    task_name = models.CharField(_("task"), max_length=255)
    args = models.JSONField(_("arguments"), default=list, blank=True)
    kwargs = models.JSONField(_("keyword arguments"), default=dict, blank=True)
    options = models.JSONField(_("publish options"), default=dict, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=OutboxStatus.choices, default=OutboxStatus.PENDING
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    #: Set by whoever is publishing the row, so the sweeper and the commit hook do not both send.
    claimed_at = models.DateTimeField(_("claimed at"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    last_error = models.TextField(_("last error"), blank=True)

    class Meta:
        verbose_name = _("outbox message")
        verbose_name_plural = _("outbox messages")
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "created_at"], name="rel_outbox_pending")]

    def __str__(self) -> str:
        return f"{self.task_name}[{self.task_id}]"


class Delivery(models.Model):
    """How many times one run of a task (id + retry number) was handed to a worker."""

    key = models.CharField(_("delivery key"), max_length=300, unique=True)
    task_id = models.CharField(_("task id"), max_length=255, db_index=True)
    count = models.PositiveIntegerField(_("deliveries"), default=0)
    first_at = models.DateTimeField(_("first delivered at"), default=timezone.now)
    #: Set when the run finished, so a duplicate message of an idempotent task is skipped.
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")
        # Pruned by age every few seconds (reliability.outbox.prune).
        indexes = [models.Index(fields=["first_at"], name="rel_delivery_first_at")]

    def __str__(self) -> str:
        return f"{self.key} x{self.count}"


class DeadLetter(models.Model):
    """A task set aside instead of being delivered again. Its arguments are not copied here."""

    task_id = models.CharField(_("task id"), max_length=255, unique=True)
    task_name = models.CharField(_("task"), max_length=255)
    reason = models.TextField(_("reason"))
    deliveries = models.PositiveIntegerField(_("deliveries"), default=0)
    created_at = models.DateTimeField(_("set aside at"), default=timezone.now)

    class Meta:
        verbose_name = _("dead letter")
        verbose_name_plural = _("dead letters")
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.task_name}[{self.task_id}]"


class LedgerEntry(models.Model):
    """One execution of a chaos-suite task: losses and duplicates are counted from these rows."""

    run = models.CharField(_("run"), max_length=100, db_index=True)
    task_id = models.CharField(_("task id"), max_length=255, db_index=True)
    attempt = models.PositiveIntegerField(_("attempt"))
    worker_pid = models.PositiveIntegerField(_("worker pid"))
    at = models.DateTimeField(_("at"), default=timezone.now)
    #: Set when the execution finished; a row left False was killed mid-run.
    done = models.BooleanField(_("done"), default=False)

    class Meta:
        verbose_name = _("ledger entry")
        verbose_name_plural = _("ledger entries")

    def __str__(self) -> str:
        return f"{self.run} {self.task_id} #{self.attempt} pid {self.worker_pid}"
