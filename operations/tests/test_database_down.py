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
