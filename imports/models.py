"""File batches: uploaded files, the products imported from CSV files, and the rows rejected."""

from __future__ import annotations

import uuid
from pathlib import PurePath

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


def _stored_name(folder: str, filename: str) -> str:
    # Stored under a random name: the original one is kept on the row for display, so a
    # user-chosen name never decides a path on disk and two uploads never collide.
    suffix = PurePath(filename).suffix.lower()[:10]
    return f"imports/{folder}/{timezone.now():%Y/%m/%d}/{uuid.uuid4().hex}{suffix}"


def upload_path(instance: ImportFile, filename: str) -> str:
    return _stored_name("files", filename)


def thumbnail_path(instance: ImportFile, filename: str) -> str:
    return _stored_name("thumbnails", filename)


class ImportBatch(models.Model):
    """The files one person uploaded at once."""

    class Status(models.TextChoices):
        # Its files are stored and their messages wait in the outbox for the broker to be back.
        NOT_QUEUED = "not_queued", _("waiting for the task queue")
        QUEUED = "queued", _("queued")
        PROCESSING = "processing", _("processing")
        DONE = "done", _("done")
        PARTIAL = "partial", _("done, some files failed")
        FAILED = "failed", _("failed")

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        on_delete=models.SET_NULL,
        null=True,
        related_name="import_batches",
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.QUEUED
    )
    language = models.CharField(
        _("language"),
        max_length=20,
        blank=True,
        help_text=_("The uploader's language: error messages are written in it."),
    )

    class Meta:
        verbose_name = _("import batch")
        verbose_name_plural = _("import batches")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return _("Batch %(id)s") % {"id": self.pk}

    @property
    def finished(self) -> bool:
        return self.status in {self.Status.DONE, self.Status.PARTIAL, self.Status.FAILED}


class ImportFile(models.Model):
    """One uploaded file, stored before it is processed so a dead worker loses nothing."""

    class Kind(models.TextChoices):
        CSV = "csv", _("CSV")
        IMAGE = "image", _("image")

    class Status(models.TextChoices):
        # Not a failure: the broker did not take the task yet, and the outbox sweeper sends it
        # once the broker is back; the file is queued from then (services.on_outbox_published).
        NOT_QUEUED = "not_queued", _("waiting for the task queue")
        QUEUED = "queued", _("queued")
        PROCESSING = "processing", _("processing")
        DONE = "done", _("done")
        FAILED = "failed", _("failed")

    batch = models.ForeignKey(
        ImportBatch, verbose_name=_("batch"), on_delete=models.CASCADE, related_name="files"
    )
    file = models.FileField(_("file"), upload_to=upload_path, max_length=255)
    original_name = models.CharField(_("original name"), max_length=255)
    size = models.PositiveBigIntegerField(_("size in bytes"), default=0)
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.QUEUED
    )
    progress_current = models.PositiveIntegerField(_("progress (done)"), default=0)
    progress_total = models.PositiveIntegerField(_("progress (total)"), default=0)
    rows_imported = models.PositiveIntegerField(_("rows imported"), default=0)
    rows_rejected = models.PositiveIntegerField(_("rows rejected"), default=0)
    error = models.TextField(_("error"), blank=True)
    thumbnail = models.ImageField(
        _("thumbnail"), upload_to=thumbnail_path, max_length=255, blank=True
    )
    task_id = models.CharField(
        _("task id"),
        max_length=255,
        blank=True,
        help_text=_(
            "The Celery task that processes the file; an older task finding "
            "another id here knows it was superseded."
        ),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("imported file")
        verbose_name_plural = _("imported files")
        ordering = ["batch_id", "id"]

    def __str__(self) -> str:
        return self.original_name

    @property
    def percent(self) -> int:
        if self.status == self.Status.DONE:
            return 100
        if not self.progress_total:
            return 0
        return min(100, self.progress_current * 100 // self.progress_total)


class Product(models.Model):
    """A product read from a CSV file; re-processing the file replaces its products."""

    sku = models.CharField(_("SKU"), max_length=64)
    name = models.CharField(_("name"), max_length=200)
    price = models.DecimalField(_("price"), max_digits=10, decimal_places=2)
    stock = models.PositiveIntegerField(_("stock"))
    source_file = models.ForeignKey(
        ImportFile,
        verbose_name=_("source file"),
        on_delete=models.CASCADE,
        related_name="products",
    )
    line_number = models.PositiveIntegerField(_("line number"))

    class Meta:
        verbose_name = _("product")
        verbose_name_plural = _("products")
        ordering = ["source_file_id", "line_number"]
        constraints = [
            # Also the backstop of idempotency: a file imported twice over cannot double up.
            models.UniqueConstraint(
                fields=["source_file", "sku"], name="imports_product_unique_sku_per_file"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"


class RowError(models.Model):
    """A CSV row that was not imported, with the line it starts on and why."""

    file = models.ForeignKey(
        ImportFile, verbose_name=_("file"), on_delete=models.CASCADE, related_name="row_errors"
    )
    line_number = models.PositiveIntegerField(_("line number"))
    reason = models.TextField(_("reason"))
    content = models.CharField(_("content"), max_length=500, blank=True)

    class Meta:
        verbose_name = _("row error")
        verbose_name_plural = _("row errors")
        ordering = ["file_id", "line_number"]

    def __str__(self) -> str:
        return _("line %(line)s: %(reason)s") % {"line": self.line_number, "reason": self.reason}
