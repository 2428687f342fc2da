from __future__ import annotations

from unittest import mock

import pytest
from django.test import Client
from django.urls import reverse

from imports import services
from imports.models import ImportFile
from imports.tasks import process_import_file
from reliability import outbox

from .factories import corrupt_jpeg, csv_file, image_bytes, image_file, make_batch, product_csv

pytestmark = pytest.mark.django_db


@pytest.fixture
def processed_batch():
    batch = make_batch(
        csv_file("p.csv", product_csv(20).content),
        image_file("broken.jpg", corrupt_jpeg()),
        image_file("fine.png", image_bytes()),
    )
    for import_file in batch.files.all():
        services.process_file(import_file.pk, import_file.task_id)
    return batch


def test_every_model_has_a_working_admin(admin_client: Client, processed_batch) -> None:
    import_file = processed_batch.files.get(original_name="p.csv")
    for name in ("importbatch", "importfile", "product", "rowerror"):
        assert admin_client.get(reverse(f"admin:imports_{name}_changelist")).status_code == 200
    assert (
        admin_client.get(
            reverse("admin:imports_importbatch_change", args=[processed_batch.pk])
        ).status_code
        == 200
    )
    page = admin_client.get(reverse("admin:imports_importfile_change", args=[import_file.pk]))
    assert page.status_code == 200
    errors = admin_client.get(
        reverse("admin:imports_rowerror_changelist") + f"?file__id__exact={import_file.pk}"
    )
    assert errors.status_code == 200
    assert errors.context["cl"].result_count == 2
    # Files come in through the upload page only.
    assert admin_client.get(reverse("admin:imports_importfile_add")).status_code == 403


def test_the_admin_action_requeues_failed_files_only(
    admin_client: Client, processed_batch, django_capture_on_commit_callbacks
) -> None:
    files = list(processed_batch.files.all())
    broken = processed_batch.files.get(original_name="broken.jpg")
    old_task_id = broken.task_id
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(
            reverse("admin:imports_importfile_changelist"),
            {"action": "reprocess", "_selected_action": [f.pk for f in files]},
            follow=True,
        )
    text = [str(m) for m in response.context["messages"]]
    assert "1 file queued again." in text
    assert "2 files skipped: only failed files are re-processed." in text
    broken.refresh_from_db()
    assert broken.status == ImportFile.Status.QUEUED
    assert broken.task_id != old_task_id
    with mock.patch.object(process_import_file, "apply_async") as apply_async:
        for callback in callbacks:
            callback()
    apply_async.assert_called_once_with(
        (broken.pk,), {}, task_id=broken.task_id, retry=False, headers=outbox.HEADERS
    )
