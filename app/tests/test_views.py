from __future__ import annotations

import uuid

import pytest
from django.test import Client, override_settings


def test_result_rejects_an_id_that_is_not_a_uuid(client: Client) -> None:
    response = client.get("/test/result/not-a-task-id/")
    assert response.status_code == 400
    assert "UUID" in response.json()["error"]


@pytest.mark.django_db
def test_result_of_an_unknown_id_is_pending_with_an_explanation(client: Client) -> None:
    task_id = str(uuid.uuid4())
    data = client.get(f"/test/result/{task_id}/").json()
    assert data["task_id"] == task_id
    assert data["status"] == "PENDING"
    assert data["ready"] is False
    assert "unknown" in data["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "spelling", [str.upper, lambda i: i.replace("-", ""), "urn:uuid:{}".format]
)
def test_result_of_an_id_written_otherwise_is_found(client: Client, spelling) -> None:
    from django_celery_results.models import TaskResult

    task_id = str(uuid.uuid4())
    TaskResult.objects.create(task_id=task_id, status="SUCCESS", result="8")
    data = client.get(f"/test/result/{spelling(task_id)}/").json()
    assert (data["task_id"], data["status"], data["result"]) == (task_id, "SUCCESS", 8)


@override_settings(TUTORIAL_VIEWS_ENABLED=False)
@pytest.mark.parametrize("path", ["/test/", "/test/apply_async/"])
def test_tutorial_views_are_off_when_disabled(client: Client, path: str) -> None:
    assert client.get(path).status_code == 404


def test_tutorial_views_take_get_only(client: Client) -> None:
    assert client.post("/test/").status_code == 405


@pytest.mark.django_db
def test_result_of_another_apps_task_is_only_for_whoever_the_console_lets_see_it(
    client: Client, django_user_model
) -> None:
    """The page is open to anyone, as in the tutorial: it must not read other tasks' results
    (a user's console launch, a maintenance job's report) to anyone."""
    from django.contrib.auth.models import Permission
    from django_celery_results.models import TaskResult

    from taskconsole.models import Origin, TaskRecord

    owner = django_user_model.objects.create_user("owner", password="pw-123456")
    owner.user_permissions.set(Permission.objects.filter(codename="view_taskrecord"))
    private, tutorial = str(uuid.uuid4()), str(uuid.uuid4())
    TaskRecord.objects.create(
        task_id=private, name="pages.tasks.fetch", origin=Origin.USER, owner=owner
    )
    TaskResult.objects.create(task_id=private, status="SUCCESS", result='"mine"')
    TaskRecord.objects.create(task_id=tutorial, name="app.tasks.add", origin=Origin.WEB)
    TaskResult.objects.create(task_id=tutorial, status="SUCCESS", result="8")

    refused = client.get(f"/test/result/{private}/")
    assert refused.status_code == 404
    assert "result" not in refused.json()
    assert "task console" in refused.json()["error"]
    assert client.get(f"/test/result/{tutorial}/").json()["result"] == 8
    client.force_login(owner)
    assert client.get(f"/test/result/{private}/").json()["result"] == "mine"
