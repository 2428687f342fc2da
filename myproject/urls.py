from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # The site's own login, for everyone with an account (the admin's refuses non-staff users).
    # LoginView only follows a `next` on this site; after a plain login, and after the logout
    # (POST only), people land on the home page.
    path("accounts/login/", auth_views.LoginView.as_view(next_page="home"), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="home"), name="logout"),
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

# A database that is away answers 503 with its own page, whichever part of the request met it.
handler500 = "operations.views.server_error"
# Django's own 400 page is one English line; this one says what was too much.
handler400 = "operations.views.bad_request"
