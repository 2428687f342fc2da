"""The console API under schemathesis: no server error, and a refused request publishes nothing.

A small, in-process version of the chaos suite's `fuzz` scenario (which runs a thousand cases
against gunicorn), so a regression shows up in the ordinary test run.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from taskconsole.models import ApiToken, TaskRecord

pytestmark = pytest.mark.django_db

EXAMPLES = 3
#: /workers/ waits a second for worker replies on every call.
FEW = {"GET /workers/": 1}


@pytest.fixture
def identities() -> dict[str, dict[str, str]]:
    User = get_user_model()
    staff = User.objects.create_user("fuzz-staff", is_staff=True, is_superuser=True)
    nobody = User.objects.create_user("fuzz-nobody")
    return {
        "anonymous": {},
        "staff": {"Authorization": "Token " + ApiToken.issue(staff)[1]},
        "no permission": {"Authorization": "Token " + ApiToken.issue(nobody)[1]},
    }


#: Operations that accept every input have no negative case; finding that out takes seconds.
UNSATISFIABLE: set[tuple[str, GenerationMode]] = set()


def fuzz(operation, mode: GenerationMode, identity: str, headers: dict, sent: list) -> list:
    """Run hypothesis' cases of one operation as one caller; return (label, status, published)."""
    label = f"{operation.method.upper()} {operation.path}"
    if (label, mode) in UNSATISFIABLE:
        return []
    seen: list[tuple[str, int, int]] = []

    @settings(
        max_examples=FEW.get(label, EXAMPLES),
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=True,
    )
    @given(operation.as_strategy(generation_mode=mode))
    def call(case) -> None:
        case.headers = {
            k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"
        }
        messages, records = len(sent), TaskRecord.objects.count()
        response = case.call(headers=headers)
        published = len(sent) - messages + TaskRecord.objects.count() - records
        seen.append((f"{label} as {identity}", response.status_code, published))

    try:
        call()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        UNSATISFIABLE.add((label, mode))
    return seen


@pytest.fixture
def wsgi_app():
    """The real WSGI handler, except that it leaves the test's database connection open."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def test_fuzzed_console_api_answers_without_server_errors_or_stray_tasks(
    identities, sent, wsgi_app
) -> None:
    schema = schemathesis.openapi.from_wsgi(
        "/console/api/openapi.json", wsgi_app, headers=identities["staff"]
    )
    answers = [
        answer
        for result in schema.get_all_operations()
        for identity, headers in identities.items()
        for mode in GenerationMode
        for answer in fuzz(result.ok(), mode, identity, headers, sent)
    ]
    assert len(answers) > 100
    assert [a for a in answers if a[1] >= 500] == []
    assert [a for a in answers if 400 <= a[1] < 500 and a[2]] == []
    # The staff token did get through: the fuzzing reached the views, not only the auth check.
    assert any(a[1] < 300 and "staff" in a[0] for a in answers)
