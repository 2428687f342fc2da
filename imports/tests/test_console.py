"""Re-processing a failed file from the task console: the schema, who may, the progress."""

from __future__ import annotations

from unittest import mock

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from imports import services, tasks
from imports.models import ImportFile
from operations.testing import console_launch
from taskconsole.models import AuditEntry, TaskRecord

from .factories import csv_file, make_batch, product_csv, user_with

pytestmark = pytest.mark.django_db

LAUNCH = "/console/api/launch/"
TASK = "imports.tasks.reprocess_import_file"


def stored_file(status: str = ImportFile.Status.FAILED) -> ImportFile:
    with mock.patch.object(services, "dispatch_files"):
        import_file = make_batch(csv_file("p.csv", product_csv(3).content)).files.get()
    ImportFile.objects.filter(pk=import_file.pk).update(status=status)
    return import_file


def launch(arguments: dict, *perms: str) -> tuple[int, dict]:
    user = user_with(*perms, username="operator")
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="taskconsole", codename__in=["view_taskrecord", "launch_task"]
        )
    )
    client = Client()
    client.force_login(user)
    return console_launch(client, TASK, arguments)


def test_a_failed_file_is_launched_on_the_heavy_queue(sent) -> None:
    import_file = stored_file()
    status, _body = launch({"file_id": import_file.pk}, "change_importfile")
    assert status == 201
    [message] = sent
    assert message["headers"]["task"] == TASK
    assert message["body"][1] == {"file_id": import_file.pk}
    assert message["routing_key"] == "heavy_tasks"


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({}, "Field required"),
        ({"file_id": [1]}, "valid integer"),
        ({"file_id": 0}, "greater than or equal to 1"),
        ({"file_id": 999_999}, "There is no imported file with id 999999."),
        ("done", "Only a failed file can be re-processed; this one is done."),
    ],
)
def test_bad_arguments_are_refused_and_nothing_is_published(sent, arguments, fragment) -> None:
    if arguments == "done":
        arguments = {"file_id": stored_file(ImportFile.Status.DONE).pk}
    status, body = launch(arguments, "change_importfile")
    assert status == 400
    assert body["error"] == "invalid_arguments"
    assert fragment in " ".join(body["errors"]["file_id"])
    assert sent == []
    assert not TaskRecord.objects.exists()
    assert not AuditEntry.objects.exists()


def test_the_console_permission_alone_is_not_enough(sent) -> None:
    status, body = launch({"file_id": stored_file().pk}, "add_importbatch")
    assert status == 400
    assert body["errors"]["__all__"] == ["You may not re-process imported files."]
    assert sent == []


def test_progress_goes_to_the_celery_state_and_the_console_alike() -> None:
    import_file = stored_file(ImportFile.Status.QUEUED)
    with (
        mock.patch.object(tasks.process_import_file, "update_state") as update_state,
        mock.patch.object(tasks.console_progress, "report", side_effect=RuntimeError) as report,
    ):
        result = tasks.process_import_file.apply(args=[import_file.pk], task_id=import_file.task_id)
    # A console that cannot record progress does not stop the import.
    assert result.result["status"] == ImportFile.Status.DONE
    assert update_state.call_args_list[-1].kwargs["meta"]["current"] == 3
    assert [call.args for call in report.call_args_list] == [
        (kwargs["meta"]["current"], kwargs["meta"]["total"])
        for _args, kwargs in update_state.call_args_list
    ]
    assert report.call_args_list[-1].args == (3, 3)
