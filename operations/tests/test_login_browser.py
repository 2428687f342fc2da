"""The site's login page in chromium, driven by Playwright, against a live server.

Like taskconsole/tests/test_browser.py: Debian's chromium (or CHROMIUM), no browser download.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission

from operations.testing import chromium

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def browser_context(live_server):
    with chromium() as browser:
        yield lambda locale: browser.new_context(locale=locale, timezone_id="Europe/Paris")


@pytest.fixture
def launcher(django_user_model):
    user = django_user_model.objects.create_user("launcher", password="pw-123456")
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="taskconsole", codename__in=["view_taskrecord", "launch_task"]
        )
    )
    return user


def test_a_non_staff_user_logs_in_through_the_form_and_sees_the_console(
    browser_context, live_server, launcher
):
    base = live_server.url
    page = browser_context("en-US").new_page()
    page.set_default_timeout(60_000)

    page.goto(f"{base}/console/")
    page.wait_for_url(re.compile(r"/accounts/login/\?next=/console/$"))
    page.fill("#id_username", "launcher")
    page.fill("#id_password", "pw-123456")
    page.click("#login-button")
    page.wait_for_url(re.compile(r"/console/$"))
    assert "launcher" in page.inner_text("header")
    assert "Tasks" in page.inner_text("nav")

    # Log out (a POST, from the site's header) and the console asks for a login again.
    page.goto(f"{base}/")
    page.click("#logout-form button")
    page.wait_for_url(f"{base}/")
    page.goto(f"{base}/console/")
    page.wait_for_url(re.compile(r"/accounts/login/"))


def test_a_wrong_password_is_refused_in_chinese(browser_context, live_server, launcher):
    page = browser_context("zh-CN").new_page()
    page.set_default_timeout(60_000)
    page.set_extra_http_headers({"Accept-Language": "zh-hans"})

    page.goto(f"{live_server.url}/console/")
    page.wait_for_selector("html[lang='zh-hans']")
    page.fill("#id_username", "launcher")
    page.fill("#id_password", "wrong")
    page.click("#login-button")
    assert "请输入一个正确的用户名和密码" in page.inner_text("#login-errors")
    assert page.url.endswith("/accounts/login/")
    assert page.input_value("#id_username") == "launcher"
