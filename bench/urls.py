"""The bench process's URLconf: the product's URLs plus the dispatch views of item 1."""

from __future__ import annotations

from django.urls import include, path

from . import views

urlpatterns = [
    path("bench/bare/", views.bare_delay),
    path("bench/delay/", views.product_delay),
    path("bench/on-commit/", views.on_commit),
    path("bench/console/", views.console_launch),
    path("", include("myproject.urls")),
]
