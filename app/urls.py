from django.urls import path, re_path

from . import views

urlpatterns = [
    re_path(r"^test/$", views.test_celery, name="test_celery"),
    path("test/apply_async/", views.test_apply_async, name="test_apply_async"),
    path("test/result/<str:task_id>/", views.task_result, name="task_result"),
]
