from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from . import text


class ExpansionStatus(models.TextChoices):
    NOT_REQUESTED = "not_requested", _("Not requested")
    PENDING = "pending", _("Pending")
    EXPANDED = "expanded", _("Expanded")
    NOT_QUEUED = "not_queued", _("Not queued: the task queue was unavailable")
    # Its task was revoked (the task console's cancel, `celery control revoke`) or expired.
    CANCELLED = "cancelled", _("Not expanded: its task was cancelled")


class Article(models.Model):
    title = models.CharField(_("title"), max_length=200)
    body = models.TextField(_("body"))
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("author"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="articles",
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    # Set by every save(): an edit by a person. The expansion task writes with a conditional
    # UPDATE, which leaves it alone; its own time is last_expanded_at.
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    expansion_status = models.CharField(
        _("expansion status"),
        max_length=20,
        choices=ExpansionStatus.choices,
        default=ExpansionStatus.NOT_REQUESTED,
    )
    last_expanded_at = models.DateTimeField(_("last expanded at"), null=True, blank=True)

    class Meta:
        verbose_name = _("article")
        verbose_name_plural = _("articles")
        ordering = ["-updated_at", "-pk"]

    def __str__(self) -> str:
        return self.title


class Abbreviation(models.Model):
    short_form = models.CharField(
        _("short form"),
        max_length=50,
        unique=True,
        help_text=_(
            'Matched as a whole word and case-sensitively: "DB" matches neither "DBA" nor "db".'
        ),
    )
    expansion = models.CharField(_("expansion"), max_length=255)

    class Meta:
        verbose_name = _("abbreviation")
        verbose_name_plural = _("abbreviations")
        ordering = ["short_form"]

    def __str__(self) -> str:
        return f"{self.short_form} → {self.expansion}"

    def clean(self) -> None:
        # Every save of an article expands it again, so an expansion that contains an
        # abbreviation would grow the text on each run. Refuse it here instead.
        others = Abbreviation.objects.exclude(pk=self.pk)
        errors: dict[str, ValidationError] = {}
        found = text.whole_words_in(
            self.expansion, [self.short_form, *others.values_list("short_form", flat=True)]
        )
        if found:
            errors["expansion"] = ValidationError(
                _(
                    'The expansion contains the abbreviation "%(found)s", which would be '
                    "expanded again every time the article is saved."
                ),
                code="contains_abbreviation",
                params={"found": found[0]},
            )
        for other in others.only("short_form", "expansion"):
            if self.short_form and text.whole_words_in(other.expansion, [self.short_form]):
                errors["short_form"] = ValidationError(
                    _(
                        '"%(short_form)s" occurs in the expansion of "%(other)s", which would '
                        "then be expanded again every time an article is saved."
                    ),
                    code="in_other_expansion",
                    params={"short_form": self.short_form, "other": other.short_form},
                )
                break
        if errors:
            raise ValidationError(errors)
