from __future__ import annotations

from django.contrib import admin

from .models import ApiToken, AuditEntry, TaskRecord


@admin.register(TaskRecord)
class TaskRecordAdmin(admin.ModelAdmin):
    list_display = ["task_id", "name", "status", "origin", "owner", "queue", "created_at"]
    list_filter = ["status", "origin", "queue"]
    search_fields = ["=task_id", "name"]
    raw_id_fields = ["owner", "retry_of"]
    readonly_fields = [f.name for f in TaskRecord._meta.fields if f.name != "id"]
    # No count(*) over a million rows on every page.
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["at", "user", "action", "target"]
    list_filter = ["action"]
    search_fields = ["target"]
    readonly_fields = ["at", "user", "action", "target", "details"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created_at", "last_used_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    raw_id_fields = ["user"]

    def has_add_permission(self, request) -> bool:
        # Keys are shown once, so they are issued by `manage.py taskconsole_token`.
        return False
