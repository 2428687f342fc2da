from __future__ import annotations

from django.contrib import admin

from .models import DeadLetter, LedgerEntry, OutboxMessage


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    list_display = ["task_id", "task_name", "status", "created_at", "sent_at", "attempts"]
    list_filter = ["status", "task_name"]
    search_fields = ["task_id", "task_name"]
    readonly_fields = [f.name for f in OutboxMessage._meta.fields]


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ["task_id", "task_name", "deliveries", "reason", "created_at"]
    list_filter = ["task_name"]
    search_fields = ["task_id", "task_name"]
    readonly_fields = [f.name for f in DeadLetter._meta.fields]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    list_display = ["run", "task_id", "attempt", "worker_pid", "done", "at"]
    list_filter = ["run", "done"]
