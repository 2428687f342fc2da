from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("operations.urls")),
    path("", include("app.urls")),
    path("notifications/", include("notifications.urls")),
    path("pages/", include("pages.urls")),
    path("articles/", include("articles.urls")),
    path("imports/", include("imports.urls")),
    path("maintenance/", include("maintenance.urls")),
    path("console/", include("taskconsole.urls")),
    path("", include("reliability.urls")),
]
