from django.urls import path

from . import views

app_name = "imports"

urlpatterns = [
    path("", views.index, name="index"),
    path("upload/", views.upload, name="upload"),
    path("batches/<int:batch_id>/", views.batch_detail, name="batch"),
    path("batches/<int:batch_id>/status/", views.batch_status, name="batch_status"),
    path("files/<int:file_id>/thumbnail/", views.thumbnail, name="thumbnail"),
]
