"""Submit a URL, follow its fetch → parse → store chain, read the outcome."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from . import services
from .forms import PageSubmitForm
from .models import PageInfo

RECENT = 25


def _index(request: HttpRequest, form: PageSubmitForm, status: int = 200) -> HttpResponse:
    context = {
        "form": form,
        "pages": services.visible_pages(request.user)[:RECENT],
        "can_submit": request.user.has_perm("pages.add_pageinfo"),
    }
    return render(request, "pages/index.html", context, status=status)


def _visible(request: HttpRequest, pk: int) -> PageInfo:
    # Someone else's submission is a 404, not a 403: its existence is not shown either.
    return get_object_or_404(services.visible_pages(request.user), pk=pk)


@require_GET
@login_required
def index(request: HttpRequest) -> HttpResponse:
    return _index(request, PageSubmitForm())


@require_POST
@login_required
@permission_required("pages.add_pageinfo", raise_exception=True)
def submit(request: HttpRequest) -> HttpResponse:
    form = PageSubmitForm(request.POST)
    if not form.is_valid():
        # The form comes back with the URL as typed and the reason it was refused.
        return _index(request, form, status=400)
    page = services.submit_page(form.cleaned_data["url"], request.user)
    messages.success(request, _("Fetching %(url)s.") % {"url": page.url})
    return redirect("pages:detail", pk=page.pk)


@require_GET
@login_required
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    page = _visible(request, pk)
    context = {
        "page": page,
        "snapshot": services.page_snapshot(page),
        "can_submit": request.user.has_perm("pages.add_pageinfo"),
    }
    return render(request, "pages/detail.html", context)


@require_GET
@login_required
def status(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse(services.page_snapshot(_visible(request, pk)))


@require_POST
@login_required
@permission_required("pages.add_pageinfo", raise_exception=True)
def again(request: HttpRequest, pk: int) -> HttpResponse:
    page = services.fetch_again(_visible(request, pk), request.user)
    messages.success(request, _("Fetching %(url)s again.") % {"url": page.url})
    return redirect("pages:detail", pk=page.pk)
