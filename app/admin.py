from django.contrib import admin

from .models import Event


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["message", "created_at"]
    date_hierarchy = "created_at"
