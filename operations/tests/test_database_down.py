"""A database that does not answer: the API and the readiness check say so, with a 503."""

from __future__ import annotations

import json

import pytest

from operations.testing import run_script

# A fresh interpreter whose DATABASE_URL leads nowhere (a directory that does not exist), as a
# deployment whose database went away: every query raises OperationalError.
SCRIPT = """
import json
import django
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
client = Client(HTTP_ACCEPT_LANGUAGE="en")
# A logged-in browser: its session is read from the database.
client.cookies["sessionid"] = "s" * 32
answers = {}
for name, path, headers in [
    ("api_token", "/console/api/tasks/", {"HTTP_AUTHORIZATION": "Token abc.def"}),
    ("api_session", "/console/api/tasks/", {}),
    ("readyz", "/readyz?format=json", {}),
]:
    response = client.get(path, **headers)
    answers[name] = {
        "status": response.status_code,
        "type": response.get("Content-Type"),
        "retry_after": response.get("Retry-After"),
        "body": response.content.decode(),
    }
print(json.dumps(answers))
"""


@pytest.mark.integration
def test_the_api_and_readyz_answer_503_when_the_database_is_gone(subprocess_env, tmp_path):
    gone = tmp_path / "no-such-directory" / "db.sqlite3"
    env = {**subprocess_env, "DATABASE_URL": f"sqlite:///{gone}"}
    answers = run_script(SCRIPT, env)
    for name in ("api_token", "api_session"):
        answer = answers[name]
        assert answer["status"] == 503, answer
        assert answer["type"] == "application/json"
        assert answer["retry_after"] == "30"
        assert json.loads(answer["body"])["error"] == "database_unavailable"
    readyz = answers["readyz"]
    assert readyz["status"] == 503, readyz
    checks = {check["name"]: check["ok"] for check in json.loads(readyz["body"])["checks"]}
    assert checks["database"] is False


PAGES_SCRIPT = """
import json, sys
import django
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
client = Client(HTTP_ACCEPT_LANGUAGE=sys.argv[1], raise_request_exception=False)
client.cookies["sessionid"] = "s" * 32
answers = {}
for method, path in [
    ("get", "/"), ("get", "/console/"), ("get", "/admin/"), ("get", "/notifications/"),
    ("post", "/notifications/new/"),
]:
    response = getattr(client, method)(path)
    answers[f"{method} {path}"] = {
        "status": response.status_code,
        "retry_after": response.get("Retry-After"),
        "body": response.content.decode(),
    }
print(json.dumps(answers))
"""


@pytest.mark.integration
@pytest.mark.parametrize(
    ("language", "title", "saved"),
    [
        ("en", "The database is unavailable", "was probably not saved"),
        ("zh-hans", "数据库不可用", "可能没有保存"),
    ],
)
def test_pages_answer_503_saying_the_database_is_away(
    subprocess_env, tmp_path, language, title, saved
):
    gone = tmp_path / "no-such-directory" / "db.sqlite3"
    env = {
        **subprocess_env,
        "DATABASE_URL": f"sqlite:///{gone}",
        "DJANGO_DEBUG": "False",
        "DJANGO_SECRET_KEY": "test-" + "k" * 50,
        "DJANGO_SECURE_SSL_REDIRECT": "False",
        "DJANGO_ALLOWED_HOSTS": "testserver",
    }
    answers = run_script(PAGES_SCRIPT, env, language)
    for name, answer in answers.items():
        assert answer["status"] == 503, (name, answer)
        assert answer["retry_after"] == "30", name
        assert title in answer["body"], name
        assert saved in answer["body"], name
        assert "OperationalError" not in answer["body"], name


def test_handler500_gives_the_database_page_only_for_a_database_that_is_away(rf) -> None:
    from django.db import IntegrityError, OperationalError

    from operations.views import server_error

    request = rf.get("/")
    try:
        raise OperationalError("could not connect to server")
    except OperationalError:
        away = server_error(request)
    try:
        raise IntegrityError("duplicate key")
    except IntegrityError:
        fault = server_error(request)
    try:
        raise OperationalError("no such table: app_article")
    except OperationalError:
        not_migrated = server_error(request)
    assert away.status_code == 503
    assert away["Retry-After"] == "30"
    assert "The database is unavailable" in away.content.decode()
    assert fault.status_code == 500
    assert "Server error" in fault.content.decode()
    # Not migrated: waiting won't fix it.
    assert not_migrated.status_code == 500


def test_handler500_sees_the_exception_under_asgi_too(rf) -> None:
    """Django's ASGI handler builds the error response in a worker thread (sync_to_async);
    asgiref raises the exception again there, so server_error still knows what happened."""
    import asyncio

    from asgiref.sync import sync_to_async
    from django.core.handlers.exception import response_for_exception
    from django.db import OperationalError

    async def as_the_asgi_handler_does() -> object:
        try:
            raise OperationalError("could not connect to server")
        except OperationalError as exc:
            return await sync_to_async(response_for_exception, thread_sensitive=False)(
                rf.get("/"), exc
            )

    response = asyncio.run(as_the_asgi_handler_does())
    assert response.status_code == 503
    assert "The database is unavailable" in response.content.decode()
