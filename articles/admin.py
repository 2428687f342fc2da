from __future__ import annotations

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import services
from .models import Abbreviation, Article, ExpansionStatus


@admin.register(Abbreviation)
class AbbreviationAdmin(admin.ModelAdmin):
    list_display = ["short_form", "expansion"]
    search_fields = ["short_form", "expansion"]


@admin.register(Article)
class ArticleAdmin(admin.ModelAdmin):
    list_display = ["title", "author", "expansion_status", "last_expanded_at", "updated_at"]
    list_filter = ["expansion_status"]
    list_select_related = ["author"]
    search_fields = ["title", "body"]
    raw_id_fields = ["author"]
    readonly_fields = ["expansion_status", "last_expanded_at", "created_at", "updated_at"]
    actions = ["expand_abbreviations"]

    def save_model(self, request: HttpRequest, obj: Article, form: ModelForm, change: bool) -> None:
        # The admin's change view runs in a transaction, so the task is sent after its commit.
        if change:
            # Only what the form changed, so a task finishing meanwhile keeps its fields.
            obj.save(update_fields=[*form.changed_data, "updated_at"])
        else:
            if obj.author_id is None:
                obj.author = request.user
            obj.save()
        services.queue_expansion([obj.pk])

    @admin.action(description=_("Expand abbreviations"), permissions=["change"])
    def expand_abbreviations(self, request: HttpRequest, queryset: QuerySet[Article]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        with transaction.atomic():
            services.queue_expansion(ids)
        not_queued = Article.objects.filter(
            pk__in=ids, expansion_status=ExpansionStatus.NOT_QUEUED
        ).count()
        queued = len(ids) - not_queued
        if queued:
            self.message_user(
                request,
                ngettext(
                    "Queued the expansion of %(count)d article.",
                    "Queued the expansion of %(count)d articles.",
                    queued,
                )
                % {"count": queued},
                messages.SUCCESS,
            )
        if not_queued:
            self.message_user(
                request,
                ngettext(
                    "%(count)d article could not be queued: the task queue is unavailable.",
                    "%(count)d articles could not be queued: the task queue is unavailable.",
                    not_queued,
                )
                % {"count": not_queued},
                messages.WARNING,
            )
