"""The site's 403, 404 and 500 pages: the refusal's own reason, in the reader's language."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.template import loader
from django.test import Client
from django.utils import translation

pytestmark = pytest.mark.django_db


@pytest.fixture
def plain_client(client: Client) -> Client:
    client.force_login(get_user_model().objects.create_user("plain", password="pw"))
    return client


@pytest.mark.parametrize(
    ("language", "reason", "advice"),
    [
        ("en", "You may not use the task console.", "You are logged in as plain."),
        ("zh-hans", "你没有使用任务控制台的权限。", "你已登录为 plain。"),
    ],
)
def test_a_refusal_shows_its_reason_in_the_readers_language(
    plain_client: Client, language: str, reason: str, advice: str
) -> None:
    response = plain_client.get("/console/", HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 403
    page = response.content.decode()
    assert reason in page
    assert advice in page
    assert f'<html lang="{language}">' in page


def test_a_refusal_without_a_reason_says_so_in_general(plain_client: Client) -> None:
    # The admin's own permission check raises PermissionDenied without a message.
    response = plain_client.get("/maintenance/", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert response.status_code == 403
    assert "你的账号不能打开这个页面。" in response.content.decode()


@pytest.mark.parametrize(
    ("language", "text"),
    [("en", "There is nothing at /no/such/page/."), ("zh-hans", "/no/such/page/ 处没有页面。")],
)
def test_an_unknown_address_is_a_404_page_in_the_readers_language(
    client: Client, language: str, text: str
) -> None:
    response = client.get("/no/such/page/", HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 404
    page = response.content.decode()
    assert text in page
    assert "Resolver404" not in page
    assert "Django passes" not in page  # the template's comment


def test_a_404_with_a_reason_shows_it(client: Client) -> None:
    admin = get_user_model().objects.create_superuser("root", "r@example.com", "pw")
    client.force_login(admin)
    response = client.get("/console/tasks/no-such-id/", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert response.status_code == 404
    assert "没有这个任务。" in response.content.decode()


def test_get_object_or_404s_english_message_is_not_shown(client: Client) -> None:
    # "No PageInfo matches the given query." names a model, untranslated: the path instead.
    client.force_login(get_user_model().objects.create_superuser("root", "r@example.com", "pw"))
    response = client.get("/pages/999999/", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert response.status_code == 404
    page = response.content.decode()
    assert "matches the given query" not in page
    assert "/pages/999999/ 处没有页面。" in page


def test_the_500_page_needs_no_request_and_is_translated() -> None:
    with translation.override("zh-hans"):
        page = loader.get_template("500.html").render()
    assert "服务器出错" in page


@pytest.mark.parametrize(
    ("language", "reason", "advice"),
    [
        (
            "en",
            "The form sent more than 100 files at once. Send fewer files at a time.",
            "Nothing was saved. Go back: your browser usually still holds what you entered.",
        ),
        ("zh-hans", "表单一次发送了超过 100 个文件。请分几次发送。", "什么都没有保存。"),
    ],
)
def test_too_many_files_get_a_400_page_that_says_so(
    client: Client, language: str, reason: str, advice: str
) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    files = [SimpleUploadedFile(f"f{i}.csv", b"sku\n") for i in range(101)]
    response = client.post("/accounts/login/", {"files": files}, HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 400
    page = response.content.decode()
    assert reason in page
    assert advice in page
    assert f'<html lang="{language}">' in page


def test_too_much_text_gets_a_400_page_that_says_how_much_is_taken(client: Client) -> None:
    response = client.post(
        "/accounts/login/",
        {"username": "x" * (3 * 1024 * 1024)},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert response.status_code == 400
    assert "The form sent more than 2.5\xa0MB of text (files not counted)" in (
        response.content.decode()
    )
