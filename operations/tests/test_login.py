"""The site's own login and logout (/accounts/login/, /accounts/logout/).

The admin's login refuses accounts that are not staff; this one lets anyone with an account in,
so a person with the console's permissions reaches the console without being staff.
"""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
LOGOUT = "/accounts/logout/"
PASSWORD = "pw-123456"
CONSOLE_PERMISSIONS = ("view_taskrecord", "launch_task")
WRONG_CREDENTIALS_ZH = "请输入一个正确的用户名和密码。注意，两者都区分大小写。"


@pytest.fixture
def launcher(django_user_model):
    """Not staff, with the console's permissions: what the admin's login turns away."""
    user = django_user_model.objects.create_user("launcher", password=PASSWORD)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="taskconsole", codename__in=CONSOLE_PERMISSIONS
        )
    )
    assert not user.is_staff
    return user


def csrf_client() -> Client:
    return Client(enforce_csrf_checks=True)


def login_form(client: Client, url: str = f"{LOGIN}?next=/console/", **headers: str) -> str:
    response = client.get(url, headers=headers)
    assert response.status_code == 200
    return response.content.decode()


def hidden_next(html: str) -> str:
    form = re.search(r'<form method="post" action="/accounts/login/".*?</form>', html, re.S)
    return re.search(r'name="next" value="([^"]*)"', form.group(0)).group(1)


def post_login(client: Client, username: str, password: str, **headers: str):
    """Fill in the form as a browser would: its CSRF token, its `next`, the credentials."""
    html = login_form(client, **headers)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    data = {"csrfmiddlewaretoken": token, "username": username, "password": password}
    data["next"] = hidden_next(html)
    return client.post(LOGIN, data, headers=headers)


def test_the_urls_and_login_url_are_the_conventional_ones() -> None:
    assert reverse("login") == LOGIN
    assert reverse("logout") == LOGOUT
    assert settings.LOGIN_URL == "login"


def test_anonymous_console_visitors_are_sent_to_the_site_login_with_next(client: Client) -> None:
    response = client.get("/console/")
    assert response.status_code == 302
    assert response["Location"] == f"{LOGIN}?next=/console/"


def test_a_non_staff_user_with_console_permissions_logs_in_and_gets_the_console(launcher) -> None:
    client = csrf_client()
    html = login_form(client)
    assert 'name="csrfmiddlewaretoken"' in html
    assert '<input type="hidden" name="next" value="/console/">' in html

    response = post_login(client, "launcher", PASSWORD)
    assert response.status_code == 302
    assert response["Location"] == "/console/"

    console = client.get("/console/")
    assert console.status_code == 200
    assert console.context["request"].user == launcher
    assert "taskconsole/index.html" in [t.name for t in console.templates]


def test_the_admin_keeps_its_own_login(client: Client, launcher) -> None:
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    # The admin still refuses non-staff accounts, even once logged in on the site.
    client.force_login(launcher)
    assert client.get("/admin/")["Location"].startswith(reverse("admin:login"))


def test_a_login_without_the_csrf_token_is_refused(launcher) -> None:
    client = csrf_client()
    login_form(client)
    response = client.post(LOGIN, {"username": "launcher", "password": PASSWORD})
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


def test_a_wrong_password_shows_the_translated_error(launcher) -> None:
    client = csrf_client()
    response = post_login(client, "launcher", "not-the-password", accept_language="zh-hans")
    html = response.content.decode()
    assert response.status_code == 200
    assert '<html lang="zh-hans">' in html
    assert WRONG_CREDENTIALS_ZH in html
    assert "<title>登录" in html
    assert "_auth_user_id" not in client.session


def test_an_unknown_user_gets_the_same_answer_as_a_wrong_password(launcher) -> None:
    def errors(username: str) -> str:
        html = post_login(csrf_client(), username, "not-the-password").content.decode()
        return re.search(r'<ul class="errorlist" id="login-errors".*?</ul>', html, re.S).group(0)

    assert errors("launcher") == errors("nobody-by-that-name")
    assert "Please enter a correct username and password." in errors("launcher")


def test_an_inactive_account_gets_the_same_answer_too(launcher) -> None:
    launcher.is_active = False
    launcher.save()
    html = post_login(csrf_client(), "launcher", PASSWORD).content.decode()
    assert "Please enter a correct username and password." in html
    assert "inactive" not in html


@pytest.mark.parametrize(
    "next_url",
    ["https://evil.example/", "//evil.example/", "http://testserver.evil.example/console/"],
)
def test_next_only_leads_to_this_site(launcher, next_url: str) -> None:
    client = csrf_client()
    assert hidden_next(login_form(client, f"{LOGIN}?next={next_url}")) == ""
    # Even when posted by hand, a foreign `next` is ignored: the home page instead.
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    response = client.post(
        LOGIN,
        {"username": "launcher", "password": PASSWORD, "next": next_url},
        headers={"X-CSRFToken": token},
    )
    assert response.status_code == 302
    assert response["Location"] == "/"


def test_a_login_without_next_lands_on_the_home_page(launcher) -> None:
    client = csrf_client()
    html = login_form(client, LOGIN)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    response = client.post(
        LOGIN, {"csrfmiddlewaretoken": token, "username": "launcher", "password": PASSWORD}
    )
    assert response["Location"] == "/"


def test_logout_is_a_post_and_ends_the_session(launcher) -> None:
    client = csrf_client()
    post_login(client, "launcher", PASSWORD)
    assert client.get("/console/").status_code == 200

    assert client.get(LOGOUT).status_code == 405
    assert client.get("/console/").status_code == 200, "a GET must not log anyone out"

    home = client.get("/").content.decode()
    assert 'id="logout-form"' in home
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', home).group(1)
    response = client.post(LOGOUT, {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.get("/console/")["Location"] == f"{LOGIN}?next=/console/"


def test_the_header_links_to_the_site_login_and_not_the_admin(client: Client) -> None:
    html = client.get("/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert f'<a href="{LOGIN}?next=/">登录</a>' in html
    assert "/admin/login/" not in html
    # The login page does not link to itself.
    assert f'href="{LOGIN}?next=' not in login_form(client, LOGIN)


def test_a_logged_in_user_sent_back_to_login_is_told_why(client: Client, django_user_model):
    """The delivery page sends users without the console permission to the login page."""
    client.force_login(django_user_model.objects.create_user("plain", password=PASSWORD))
    response = client.get(reverse("reliability:index"), follow=True)
    html = response.content.decode()
    assert response.redirect_chain[0][0].startswith(f"{LOGIN}?next=")
    assert "You are logged in as plain" in html
    chinese = client.get(response.redirect_chain[0][0], HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert "你已作为 plain 登录" in chinese.content.decode()
