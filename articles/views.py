"""Article pages: list, create, edit. Saving queues the expansion after the commit."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from . import services
from .forms import ArticleForm
from .models import Article, ExpansionStatus

PAGE_SIZE = 50


@require_GET
@login_required
def index(request: HttpRequest) -> HttpResponse:
    articles = Article.objects.select_related("author")
    page = Paginator(articles, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "articles/index.html", {"page": page})


@require_http_methods(["GET", "POST"])
@login_required
@permission_required("articles.add_article", raise_exception=True)
def create(request: HttpRequest) -> HttpResponse:
    return _edit(request, Article(author=request.user))


@require_http_methods(["GET", "POST"])
@login_required
@permission_required("articles.change_article", raise_exception=True)
def edit(request: HttpRequest, pk: int) -> HttpResponse:
    return _edit(request, get_object_or_404(Article, pk=pk))


def _edit(request: HttpRequest, article: Article) -> HttpResponse:
    adding = article.pk is None
    form = ArticleForm(request.POST or None, instance=article)
    if request.method == "POST" and form.is_valid():
        # ATOMIC_REQUESTS is off: without this block each query commits on its own and
        # on_commit would send the task at once, before the rest of the view has run.
        with transaction.atomic():
            article = form.save(commit=False)
            if adding:
                article.save()
            else:
                # Only what the form changed: a full save would write back the expansion
                # fields as they were read, over a task that finished meanwhile.
                article.save(update_fields=[*form.changed_data, "updated_at"])
            services.queue_expansion([article.pk])
        # The commit has run send_expansion by now; it records a broker failure on the row.
        not_queued = Article.objects.filter(
            pk=article.pk, expansion_status=ExpansionStatus.NOT_QUEUED
        ).exists()
        if not_queued:
            messages.warning(
                request,
                _(
                    "“%(title)s” was saved, but its abbreviations could not be queued for "
                    "expansion yet because the task queue is unavailable; they will be expanded "
                    "automatically once it is back."
                )
                % {"title": article.title},
            )
        else:
            messages.success(
                request,
                _("“%(title)s” was saved; its abbreviations are being expanded in the background.")
                % {"title": article.title},
            )
        return redirect("articles:index")
    return render(request, "articles/form.html", {"form": form, "article": article})
