from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import services
from .models import PageInfo


@admin.register(PageInfo)
class PageInfoAdmin(admin.ModelAdmin):
    list_display = [
        "url",
        "status",
        "status_code",
        "title",
        "content_type",
        "elapsed_ms",
        "attempts",
        "created_by",
        "created_at",
    ]
    list_filter = ["status", "is_html", "created_at"]
    search_fields = ["url", "final_url", "title"]
    date_hierarchy = "created_at"
    list_select_related = ["created_by"]
    actions = ["fetch_again"]
    fieldsets = [
        (None, {"fields": ["url", "status", "attempts", "error", "created_by"]}),
        (
            _("Answer"),
            {
                "fields": [
                    "status_code",
                    "final_url",
                    "redirects",
                    "content_type",
                    "is_html",
                    "size_bytes",
                    "elapsed_ms",
                ]
            },
        ),
        (_("Page"), {"fields": ["title", "description", "links"]}),
        (
            _("Chain"),
            {"fields": ["chain_sent", "fetch_task_id", "parse_task_id", "store_task_id"]},
        ),
        (_("Dates"), {"fields": ["created_at", "updated_at", "finished_at"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: PageInfo | None = None) -> list[str]:
        # Every field is the record of a fetch: editing one would make the record untrue.
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A row added here would never be fetched; submissions start from the pages form.
        return False

    @admin.action(description=_("Fetch the selected URLs again"), permissions=["fetch"])
    def fetch_again(self, request: HttpRequest, queryset: QuerySet[PageInfo]) -> None:
        count = 0
        for page in queryset:
            services.fetch_again(page, request.user)
            count += 1
        self.message_user(
            request,
            ngettext("Fetching %(count)d URL again.", "Fetching %(count)d URLs again.", count)
            % {"count": count},
            messages.SUCCESS,
        )

    def has_fetch_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("pages.add_pageinfo")
