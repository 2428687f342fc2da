from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import services
from .models import ImportBatch, ImportFile, Product, RowError

# Files enter through the upload page, which checks them, and their results are written by
# the worker: the admin shows them and re-queues failed ones, it does not edit them.
FILE_FIELDS = [
    "batch",
    "original_name",
    "file",
    "size",
    "kind",
    "status",
    "progress_current",
    "progress_total",
    "rows_imported",
    "rows_rejected",
    "error",
    "thumbnail",
    "task_id",
    "created_at",
    "started_at",
    "finished_at",
]


class ImportFileInline(admin.TabularInline):
    model = ImportFile
    fields = ["original_name", "kind", "status", "rows_imported", "rows_rejected", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: ImportBatch | None = None) -> bool:
        return False


@admin.register(ImportBatch)
class ImportBatchAdmin(admin.ModelAdmin):
    list_display = ["__str__", "created_by", "created_at", "status", "file_count", "finished_at"]
    list_filter = ["status", "created_at"]
    list_select_related = ["created_by"]
    date_hierarchy = "created_at"
    readonly_fields = ["created_by", "created_at", "finished_at", "status", "language"]
    inlines = [ImportFileInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ImportBatch]:
        return super().get_queryset(request).annotate(file_count=Count("files"))

    @admin.display(description=_("files"), ordering="file_count")
    def file_count(self, batch: ImportBatch) -> int:
        return batch.file_count

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(ImportFile)
class ImportFileAdmin(admin.ModelAdmin):
    list_display = [
        "original_name",
        "batch",
        "kind",
        "status",
        "progress",
        "rows_imported",
        "rows_rejected",
        "created_at",
    ]
    list_filter = ["status", "kind", "created_at"]
    search_fields = ["original_name", "task_id", "error"]
    list_select_related = ["batch"]
    readonly_fields = [*FILE_FIELDS, "row_errors_link"]
    fields = readonly_fields
    actions = ["reprocess"]

    @admin.display(description=_("progress"))
    def progress(self, import_file: ImportFile) -> str:
        return f"{import_file.progress_current} / {import_file.progress_total}"

    @admin.display(description=_("row errors"))
    def row_errors_link(self, import_file: ImportFile) -> str:
        url = reverse("admin:imports_rowerror_changelist") + f"?file__id__exact={import_file.pk}"
        return format_html('<a href="{}">{}</a>', url, _("Rejected rows of this file"))

    @admin.action(description=_("Re-process the selected failed files"), permissions=["change"])
    def reprocess(self, request: HttpRequest, queryset: QuerySet[ImportFile]) -> None:
        selected = queryset.count()
        queued = services.reprocess_files(queryset)
        if queued:
            self.message_user(
                request,
                ngettext("%(count)d file queued again.", "%(count)d files queued again.", queued)
                % {"count": queued},
                messages.SUCCESS,
            )
        if selected > queued:
            self.message_user(
                request,
                ngettext(
                    "%(count)d file skipped: only failed files are re-processed.",
                    "%(count)d files skipped: only failed files are re-processed.",
                    selected - queued,
                )
                % {"count": selected - queued},
                messages.WARNING,
            )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "name", "price", "stock", "source_file", "line_number"]
    list_filter = ["source_file__batch__created_at"]
    search_fields = ["sku", "name"]
    list_select_related = ["source_file"]
    raw_id_fields = ["source_file"]


@admin.register(RowError)
class RowErrorAdmin(admin.ModelAdmin):
    list_display = ["file", "line_number", "reason", "content"]
    list_filter = ["file__status"]
    search_fields = ["file__original_name", "reason", "content"]
    list_select_related = ["file"]
    readonly_fields = ["file", "line_number", "reason", "content"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
