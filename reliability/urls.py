from django.urls import path

from . import views

app_name = "reliability"

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics_view, name="metrics"),
    path("reliability/", views.index, name="index"),
]
