from __future__ import annotations

from celery.result import AsyncResult
from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class PageInfo(models.Model):
    """One submitted URL and what the fetch → parse → store chain found there.

    Each submission is its own row, so fetching a URL again keeps the earlier outcome.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        FETCHING = "fetching", _("Fetching")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    url = models.URLField(_("URL"), max_length=2000, help_text=_("The URL as submitted."))
    status = models.CharField(
        _("status"), max_length=16, choices=Status, default=Status.PENDING, db_index=True
    )
    attempts = models.PositiveSmallIntegerField(
        _("attempts"), default=0, help_text=_("Fetch attempts so far, retries included.")
    )
    status_code = models.PositiveSmallIntegerField(
        _("HTTP status code"), null=True, blank=True, help_text=_("Of the last answer received.")
    )
    final_url = models.URLField(
        _("final URL"), max_length=2000, blank=True, help_text=_("The URL after redirects.")
    )
    redirects = models.JSONField(
        _("redirects"), default=list, blank=True, help_text=_("Each URL redirected to, in order.")
    )
    content_type = models.CharField(_("content type"), max_length=255, blank=True)
    is_html = models.BooleanField(
        _("is HTML"),
        null=True,
        blank=True,
        help_text=_("Unknown until fetched. Bodies that are not HTML are not parsed."),
    )
    size_bytes = models.PositiveIntegerField(_("size (bytes)"), null=True, blank=True)
    elapsed_ms = models.PositiveIntegerField(
        _("fetch time (ms)"),
        null=True,
        blank=True,
        help_text=_("From the first request to the last byte, redirects included."),
    )
    title = models.CharField(_("title"), max_length=500, blank=True)
    description = models.TextField(_("description"), blank=True)
    links = models.JSONField(
        _("links"), default=list, blank=True, help_text=_("Absolute http(s) URLs, in page order.")
    )
    error = models.TextField(
        _("error"),
        blank=True,
        help_text=_("Why the fetch failed, or why the last attempt is being retried."),
    )
    language = models.CharField(
        _("language"),
        max_length=20,
        blank=True,
        help_text=_("The submitter's language: the workers write the error in it."),
    )
    fetch_task_id = models.CharField(_("fetch task id"), max_length=255, blank=True)
    parse_task_id = models.CharField(_("parse task id"), max_length=255, blank=True)
    store_task_id = models.CharField(_("store task id"), max_length=255, blank=True)
    chain_sent = models.BooleanField(
        _("chain sent"),
        default=True,
        help_text=_("Off when the broker did not take the chain: none of its steps was sent."),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="page_infos",
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("page info")
        verbose_name_plural = _("page infos")
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.url

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)

    @property
    def task_ids(self) -> list[str]:
        """The chain's task ids, parent first."""
        return [
            task_id
            for task_id in (self.fetch_task_id, self.parse_task_id, self.store_task_id)
            if task_id
        ]

    def chain_result(self) -> AsyncResult | None:
        """The chain's last result, its `.parent` the parse task and that one's the fetch.

        The same shape `(fetch | parse | store).apply_async()` returned when it was sent,
        rebuilt from the stored ids, so it can be followed from any process.
        """
        if not self.store_task_id:
            return None
        fetch = AsyncResult(self.fetch_task_id) if self.fetch_task_id else None
        parse = AsyncResult(self.parse_task_id, parent=fetch) if self.parse_task_id else None
        return AsyncResult(self.store_task_id, parent=parse)
