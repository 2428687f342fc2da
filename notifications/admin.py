from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import get_language, ngettext
from django.utils.translation import gettext_lazy as _

from . import services
from .forms import RecipientsField
from .models import Delivery, Notification


class NotificationAddForm(forms.ModelForm):
    """The admin's add form: the notification and, once, its list of recipients."""

    recipients = RecipientsField()

    class Meta:
        model = Notification
        fields = ["subject", "body"]


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = [
        "subject",
        "status",
        "recipient_count",
        "sent_count",
        "failed_count",
        "open_count",
        "created_by",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "created_at"]
    search_fields = ["subject"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "status",
        "failure_reason",
        "progress",
        "created_by",
        "created_at",
        "updated_at",
        "finished_at",
    ]
    actions = ["send_notifications", "retry_failed_recipients"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Notification]:
        return super().get_queryset(request).with_counts().select_related("created_by")

    def get_form(self, request: HttpRequest, obj: Notification | None = None, **kwargs: Any):
        if obj is None:
            kwargs["form"] = NotificationAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Notification | None = None) -> list[str]:
        if obj is None:
            return ["subject", "body", "recipients"]
        return ["subject", "body", *self.readonly_fields]

    def get_readonly_fields(self, request: HttpRequest, obj: Notification | None = None):
        if obj is None:
            return []
        if obj.status != Notification.Status.DRAFT:
            # What was sent to some recipients stays what the others get.
            return ["subject", "body", *self.readonly_fields]
        return self.readonly_fields

    def save_model(self, request: HttpRequest, obj: Notification, form, change: bool) -> None:
        if not change:
            obj.created_by = request.user
            # The admin's language: the workers write its failure reason in it.
            obj.language = get_language() or ""
        super().save_model(request, obj, form, change)
        if not change:
            services.add_recipients(obj, form.cleaned_data["recipients"])

    @admin.display(description=_("recipients"), ordering="recipient_count")
    def recipient_count(self, obj: Notification) -> int:
        return obj.recipient_count

    @admin.display(description=_("sent"), ordering="sent_count")
    def sent_count(self, obj: Notification) -> int:
        return obj.sent_count

    @admin.display(description=_("failed"), ordering="failed_count")
    def failed_count(self, obj: Notification) -> int:
        return obj.failed_count

    @admin.display(description=_("pending or retrying"))
    def open_count(self, obj: Notification) -> int:
        return obj.pending_count + obj.retrying_count

    @admin.display(description=_("progress"))
    def progress(self, obj: Notification) -> str:
        counted = Notification.objects.with_counts().get(pk=obj.pk)
        url = reverse("admin:notifications_delivery_changelist")
        return format_html(
            '<a href="{}?notification__id__exact={}">{}</a> · {}',
            url,
            obj.pk,
            ngettext("%(count)d recipient", "%(count)d recipients", counted.recipient_count)
            % {"count": counted.recipient_count},
            _("%(sent)d sent, %(failed)d failed, %(retrying)d retrying, %(pending)d pending")
            % {
                "sent": counted.sent_count,
                "failed": counted.failed_count,
                "retrying": counted.retrying_count,
                "pending": counted.pending_count,
            },
        )

    @admin.action(description=_("Send selected notifications"), permissions=["change"])
    def send_notifications(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        sent = skipped = 0
        for notification in queryset:
            if services.dispatch(notification):
                sent += 1
            else:
                skipped += 1
        if sent:
            self.message_user(
                request,
                ngettext(
                    "%(count)d notification queued for sending.",
                    "%(count)d notifications queued for sending.",
                    sent,
                )
                % {"count": sent},
                messages.SUCCESS,
            )
        if skipped:
            self.message_user(
                request,
                ngettext(
                    "%(count)d notification has no recipient waiting to be sent (already "
                    "sent, or being sent); use “Retry failed recipients” for failed ones.",
                    "%(count)d notifications have no recipient waiting to be sent (already "
                    "sent, or being sent); use “Retry failed recipients” for failed ones.",
                    skipped,
                )
                % {"count": skipped},
                messages.WARNING,
            )

    @admin.action(description=_("Retry failed recipients"), permissions=["change"])
    def retry_failed_recipients(
        self, request: HttpRequest, queryset: QuerySet[Notification]
    ) -> None:
        total = sum(services.retry_failed(notification) for notification in queryset)
        if total:
            level, text = (
                messages.SUCCESS,
                ngettext(
                    "%(count)d failed recipient queued again.",
                    "%(count)d failed recipients queued again.",
                    total,
                )
                % {"count": total},
            )
        else:
            level, text = (
                messages.WARNING,
                ngettext(
                    "The selected notification has no failed recipient.",
                    "The selected notifications have no failed recipient.",
                    queryset.count(),
                ),
            )
        self.message_user(request, text, level)


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["email", "notification", "status", "attempts", "sent_at", "last_error"]
    list_filter = ["status"]
    search_fields = ["email", "notification__subject"]
    list_select_related = ["notification"]
    readonly_fields = [
        "notification",
        "email",
        "status",
        "attempts",
        "last_error",
        "sent_at",
        "batch_task_id",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Recipients are added with their notification, which dispatches them.
        return False

    def has_change_permission(self, request: HttpRequest, obj: Delivery | None = None) -> bool:
        return False
