from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import services
from .forms import ComposeForm
from .models import Delivery, Notification

NOTIFICATIONS_PER_PAGE = 50
DELIVERIES_PER_PAGE = 100


def _progress(notification: Notification) -> dict[str, object]:
    """The numbers the detail page shows and the JSON endpoint returns."""
    done = notification.sent_count + notification.failed_count
    total = notification.recipient_count
    return {
        "id": notification.pk,
        "status": notification.status,
        "status_display": notification.get_status_display(),
        "recipients": total,
        "pending": notification.pending_count,
        "retrying": notification.retrying_count,
        "sent": notification.sent_count,
        "failed": notification.failed_count,
        "percent_done": round(100 * done / total) if total else 100,
        "failure_reason": notification.failure_reason,
        "finished": notification.finished,
    }


@require_GET
@login_required
@permission_required("notifications.view_notification", raise_exception=True)
def index(request: HttpRequest) -> HttpResponse:
    notifications = Notification.objects.with_counts().select_related("created_by")
    page = Paginator(notifications, NOTIFICATIONS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "notifications/index.html", {"page": page})


@require_http_methods(["GET", "POST"])
@login_required
@permission_required("notifications.add_notification", raise_exception=True)
def compose(request: HttpRequest) -> HttpResponse:
    form = ComposeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        recipients = form.cleaned_data["recipients"]
        with transaction.atomic():
            notification = services.create_notification(
                subject=form.cleaned_data["subject"],
                body=form.cleaned_data["body"],
                recipients=recipients,
                created_by=request.user,
            )
            # Published when this block commits: the worker never looks for rows not yet there.
            services.dispatch(notification)
        messages.success(
            request,
            ngettext(
                "The notification is queued for %(count)d recipient.",
                "The notification is queued for %(count)d recipients.",
                len(recipients),
            )
            % {"count": len(recipients)},
        )
        return redirect("notifications:detail", pk=notification.pk)
    status = 400 if form.is_bound else 200
    return render(request, "notifications/compose.html", {"form": form}, status=status)


@require_GET
@login_required
@permission_required("notifications.view_notification", raise_exception=True)
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    notification = get_object_or_404(
        Notification.objects.with_counts().select_related("created_by"), pk=pk
    )
    deliveries = notification.deliveries.order_by("pk")
    status_filter = request.GET.get("status", "")
    if status_filter in Delivery.Status.values:
        deliveries = deliveries.filter(status=status_filter)
    else:
        status_filter = ""
    page = Paginator(deliveries, DELIVERIES_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "notification": notification,
        "progress": _progress(notification),
        "page": page,
        "status_filter": status_filter,
        "statuses": Delivery.Status.choices,
    }
    return render(request, "notifications/detail.html", context)


@require_GET
@login_required
@permission_required("notifications.view_notification", raise_exception=True)
def progress(request: HttpRequest, pk: int) -> JsonResponse:
    notification = Notification.objects.with_counts().filter(pk=pk).first()
    if notification is None:
        return JsonResponse({"error": _("No such notification.")}, status=404)
    return JsonResponse(_progress(notification))


@require_POST
@login_required
@permission_required("notifications.change_notification", raise_exception=True)
def send(request: HttpRequest, pk: int) -> HttpResponse:
    """Send a draft (one the queue could not take, or made in the admin), or retry failures."""
    notification = get_object_or_404(Notification, pk=pk)
    queued = services.send_stored(
        notification.pk, retry_failed_recipients=bool(request.POST.get("failed"))
    )
    if queued:
        messages.success(request, _("The notification is queued for sending."))
    else:
        messages.warning(request, _("No recipient of this notification is waiting to be sent."))
    return redirect("notifications:detail", pk=notification.pk)
