from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from . import summaries


class Job(models.TextChoices):
    CLEAR_EXPIRED = "clear_expired", _("Clear expired sessions and cache entries")
    BACKUP_DATABASE = "backup_database", _("Back up the database")
    PRUNE_RESULTS = "prune_results", _("Prune old task results")


class RunStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")


class MaintenanceRun(models.Model):
    """One run of a maintenance job, whether beat or a person started it."""

    job = models.CharField(_("job"), max_length=32, choices=Job.choices)
    status = models.CharField(
        _("status"), max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("requested by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text=_("Empty when the periodic schedule started the run."),
    )
    task_id = models.CharField(_("task id"), max_length=255, blank=True)
    created_at = models.DateTimeField(_("queued at"), auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    summary = models.TextField(_("summary"), blank=True)
    deleted_count = models.PositiveBigIntegerField(
        _("rows deleted"),
        null=True,
        blank=True,
        help_text=_("Sessions, cache entries or task results this run deleted."),
    )
    backup_path = models.CharField(_("backup file"), max_length=500, blank=True)
    backup_size = models.PositiveBigIntegerField(_("backup size (bytes)"), null=True, blank=True)
    details = models.JSONField(_("details"), default=dict, blank=True)

    class Meta:
        verbose_name = _("maintenance run")
        verbose_name_plural = _("maintenance runs")
        ordering = ["-created_at", "-pk"]
        permissions = [("run_maintenance", _("Can start maintenance jobs now"))]

    def __str__(self) -> str:
        return f"{self.get_job_display()} #{self.pk} ({self.get_status_display()})"

    @property
    def summary_display(self) -> str:
        """The summary in the reader's language (the stored one is in the worker's)."""
        if self.status == RunStatus.SUCCEEDED:
            return summaries.of_success(self.job, self.details, self.summary)
        if self.status == RunStatus.FAILED:
            return summaries.of_failure(self.details, self.summary)
        return self.summary

    @property
    def is_active(self) -> bool:
        return self.status in {RunStatus.QUEUED, RunStatus.RUNNING}

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None
