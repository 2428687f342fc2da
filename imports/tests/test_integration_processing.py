"""File batches on a real worker consuming heavy_tasks: imports, thumbnails, progress, failures.

The worker runs with IMPORTS_TEST_ROW_DELAY (see imports/services.py), a pause after each CSV
row, so that an import of a few thousand rows lasts a few seconds: long enough to watch its
progress from outside and to kill its worker mid-file, whatever the machine's speed.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from unittest import mock

import pytest
from celery.result import AsyncResult
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django_celery_results.models import TaskResult
from PIL import Image

from imports import services
from imports.models import ImportBatch, ImportFile, Product, RowError
from imports.tasks import process_import_file
from operations.testing import ManagedProcess, wait_for
from reliability import outbox
from taskconsole.models import Origin, TaskRecord, TaskStatus

from .factories import corrupt_jpeg, csv_file, image_bytes, make_batch, product_csv, user_with

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROW_DELAY = 0.001
FINISHED = {ImportFile.Status.DONE, ImportFile.Status.FAILED}


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MEDIA_ROOT for the tests (through the `media` fixture) and the worker."""
    return tmp_path_factory.mktemp("imports-media")


@pytest.fixture(scope="module")
def heavy_worker(start_module_worker, media_dir: Path) -> ManagedProcess:
    # One process, so the tests know which process runs the task (and can kill it).
    return start_module_worker(
        queues="heavy_tasks",
        concurrency=1,
        name="heavy",
        extra_env={"DJANGO_MEDIA_ROOT": str(media_dir), "IMPORTS_TEST_ROW_DELAY": str(ROW_DELAY)},
        extra_args=("--prefetch-multiplier=1",),
    )


def fresh(import_file: ImportFile) -> ImportFile:
    import_file.refresh_from_db()
    return import_file


def finished(import_file: ImportFile) -> ImportFile | None:
    import_file = fresh(import_file)
    return import_file if import_file.status in FINISHED else None


def stored_without_dispatch(*files: tuple[str, bytes, str]) -> ImportFile:
    """Store a file as the page does, but leave sending its task to the test."""
    with mock.patch.object(services, "dispatch_files"):
        return make_batch(*files).files.get()


def children_of(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            after_name = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(after_name[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def test_a_heavy_worker_processes_a_whole_batch_uploaded_through_the_page(
    heavy_worker: ManagedProcess, client: Client, media: Path
) -> None:
    client.force_login(user_with("add_importbatch"))
    products = product_csv(3000)
    response = client.post(
        reverse("imports:upload"),
        {
            "files": [
                products.upload("products.csv"),
                SimpleUploadedFile("photo.jpg", image_bytes((1600, 1200), "JPEG")),
                SimpleUploadedFile(
                    "logo.png", image_bytes((400, 800), "PNG", "RGBA", (0, 0, 0, 0))
                ),
                # Both pass the upload's checks (a JPEG header, a CSV header) and fail in the
                # worker: the pixel data is cut short, the columns are not ours.
                SimpleUploadedFile("broken.jpg", corrupt_jpeg()),
                SimpleUploadedFile("wrong.csv", b"sku,title,cost\nA-1,Tea,1.00\n"),
            ]
        },
    )
    batch = ImportBatch.objects.get()
    assert response.status_code == 302
    assert batch.files.count() == 5

    status_url = reverse("imports:batch_status", args=[batch.pk])
    wait_for(lambda: client.get(status_url).json()["finished"], timeout=120, interval=0.5)
    batch.refresh_from_db()
    assert batch.status == ImportBatch.Status.PARTIAL
    files = {f.original_name: f for f in batch.files.all()}

    csv_import = files["products.csv"]
    assert csv_import.status == ImportFile.Status.DONE
    assert csv_import.rows_imported == products.good_count == 2993
    assert csv_import.rows_rejected == len(products.bad) == 7
    assert Product.objects.filter(source_file=csv_import).count() == 2993
    errors = {e.line_number: e.reason for e in RowError.objects.filter(file=csv_import)}
    assert sorted(errors) == sorted(products.bad)
    for line, fragment in products.bad.items():
        assert fragment in errors[line]
    last = Product.objects.get(source_file=csv_import, sku="SKU-003000")
    assert last.line_number == 3002  # the header, and row 7 spans two lines

    for name, size, fmt in [("photo.jpg", (256, 192), "JPEG"), ("logo.png", (128, 256), "PNG")]:
        assert files[name].status == ImportFile.Status.DONE
        with Image.open(media / files[name].thumbnail.name) as thumbnail:
            assert (thumbnail.size, thumbnail.format) == (size, fmt)

    assert files["broken.jpg"].status == ImportFile.Status.FAILED
    assert "corrupt or truncated" in files["broken.jpg"].error
    assert files["wrong.csv"].status == ImportFile.Status.FAILED
    assert "Missing: name, price, stock. Unexpected: title, cost." in files["wrong.csv"].error
    assert not Product.objects.filter(source_file=files["wrong.csv"]).exists()

    # Every file ran on the heavy_tasks worker, each task to its end.
    for import_file in files.values():
        # The file's row is saved inside the task, a moment before its result is stored.
        row = wait_for(
            lambda f=import_file: TaskResult.objects.filter(
                task_id=f.task_id, status="SUCCESS"
            ).first(),
            timeout=30,
        )
        assert row.worker.startswith("heavy-")
        assert import_file.task_id in heavy_worker.output
    page = client.get(reverse("imports:batch", args=[batch.pk])).content.decode()
    assert "7 rows rejected" in page
    assert reverse("imports:thumbnail", args=[files["photo.jpg"].pk]) in page


def test_a_file_uploaded_while_the_broker_refused_is_processed_once_it_is_back(
    heavy_worker: ManagedProcess, client: Client, refusing_broker
) -> None:
    client.force_login(user_with("add_importbatch"))
    with refusing_broker():
        client.post(
            reverse("imports:upload"),
            {"files": [product_csv(5, with_bad_rows=False).upload("products.csv")]},
        )
    import_file = ImportFile.objects.get()
    assert import_file.status == ImportFile.Status.NOT_QUEUED

    # The broker is back: the outbox's periodic sweep sends the task, the worker moves it on.
    assert outbox.sweep(older_than=0) == 1
    done = wait_for(lambda: finished(import_file), timeout=60)
    assert done.status == ImportFile.Status.DONE
    assert (done.rows_imported, done.error) == (5, "")
    # The worker derives the batch's status just after it saves the file, in a write of its own.
    batch = wait_for(
        lambda: ImportBatch.objects.filter(status=ImportBatch.Status.DONE).first(), timeout=30
    )
    assert batch.finished_at is not None


def test_progress_is_visible_from_outside_while_it_runs(
    heavy_worker: ManagedProcess, client: Client
) -> None:
    user = user_with("add_importbatch")
    client.force_login(user)
    products = product_csv(2000, with_bad_rows=False)
    batch = make_batch(csv_file("slow.csv", products.content), user=user)
    import_file = batch.files.get()
    status_url = reverse("imports:batch_status", args=[batch.pk])
    states: list[dict] = []
    mirrored: list[tuple[int, int]] = []
    page: list[dict] = []
    console: list[tuple[int, int]] = []

    def watch() -> bool:
        # One read for both: .state then .info could straddle the end of the task.
        meta = AsyncResult(import_file.task_id).backend.get_task_meta(import_file.task_id)
        state, info = meta["status"], meta["result"]
        if state == "PROGRESS":
            states.append(info)
        record = TaskRecord.objects.filter(task_id=import_file.task_id).first()
        if record is not None and record.status == TaskStatus.PROGRESS:
            console.append((record.progress_current, record.progress_total))
        row = fresh(import_file)
        if row.status == ImportFile.Status.PROCESSING:
            mirrored.append((row.progress_current, row.progress_total))
            page.append(client.get(status_url).json()["files"][0])
        return state == "SUCCESS"

    wait_for(watch, timeout=90, interval=0.05)

    assert states, "the task was never seen in its PROGRESS state"
    assert all(info["total"] == 2000 and info["file_id"] == import_file.pk for info in states)
    currents = [info["current"] for info in states]
    assert currents == sorted(currents)
    assert any(0 < current < 2000 for current in currents)
    assert any(0 < current < total for current, total in mirrored)
    assert any(entry["task_state"] == "PROGRESS" and entry["percent"] > 0 for entry in page)
    assert AsyncResult(import_file.task_id).result["rows_imported"] == 2000
    # The task console's record of the task showed the same progress, and ends complete.
    assert any(0 < current < total == 2000 for current, total in console)
    record = wait_for(
        lambda: TaskRecord.objects.filter(
            task_id=import_file.task_id, status=TaskStatus.SUCCESS
        ).first(),
        timeout=30,
    )
    assert (record.progress_current, record.progress_total, record.progress_percent) == (
        2000,
        2000,
        100,
    )


def test_a_worker_killed_mid_file_loses_nothing_and_doubles_nothing(
    heavy_worker: ManagedProcess,
) -> None:
    products = product_csv(2000)
    import_file = make_batch(csv_file("killed.csv", products.content)).files.get()
    # Half imported: the first chunks are committed when the process dies.
    wait_for(lambda: Product.objects.filter(source_file=import_file).count() >= 500, timeout=60)
    [child] = children_of(heavy_worker.process.pid)
    os.kill(child, signal.SIGKILL)

    import_file = wait_for(lambda: finished(import_file), timeout=90)
    assert import_file.status == ImportFile.Status.DONE
    assert import_file.rows_imported == products.good_count
    assert Product.objects.filter(source_file=import_file).count() == products.good_count
    assert RowError.objects.filter(file=import_file).count() == len(products.bad)
    assert "WorkerLostError" in heavy_worker.output
    wait_for(
        lambda: TaskResult.objects.filter(task_id=import_file.task_id, status="SUCCESS").exists(),
        timeout=30,
    )


def test_past_the_soft_time_limit_the_file_fails_clearly(heavy_worker: ManagedProcess) -> None:
    import_file = stored_without_dispatch(csv_file("long.csv", product_csv(3000).content))
    process_import_file.apply_async(
        (import_file.pk,), task_id=import_file.task_id, soft_time_limit=1, time_limit=30
    )
    import_file = wait_for(lambda: finished(import_file), timeout=60)
    assert import_file.status == ImportFile.Status.FAILED
    assert "longer than the time limit" in import_file.error
    assert not Product.objects.filter(source_file=import_file).exists()
    row = wait_for(
        lambda: TaskResult.objects.filter(task_id=import_file.task_id, status="FAILURE").first(),
        timeout=30,
    )
    assert "SoftTimeLimitExceeded" in row.result


def test_a_file_whose_worker_is_lost_too_often_fails_and_can_be_reprocessed_from_the_admin(
    heavy_worker: ManagedProcess, admin_client: Client
) -> None:
    products = product_csv(2000)
    import_file = stored_without_dispatch(csv_file("unlucky.csv", products.content))
    first_task = import_file.task_id
    # Sent as if it had been retried twice already (max_retries=2): when this process dies too,
    # the worker's main process gives up and records the failure through the task_failure
    # signal, as it does for a hard time limit, since the task cannot record it itself.
    process_import_file.apply_async((import_file.pk,), task_id=first_task, retries=2)
    wait_for(lambda: Product.objects.filter(source_file=import_file).exists(), timeout=60)
    [child] = children_of(heavy_worker.process.pid)
    os.kill(child, signal.SIGKILL)

    import_file = wait_for(lambda: finished(import_file), timeout=60)
    assert import_file.status == ImportFile.Status.FAILED
    assert "stopped unexpectedly (WorkerLostError" in import_file.error
    assert not Product.objects.filter(source_file=import_file).exists()
    wait_for(
        lambda: TaskResult.objects.filter(task_id=first_task, status="FAILURE").exists(),
        timeout=30,
    )

    admin_client.post(
        reverse("admin:imports_importfile_changelist"),
        {"action": "reprocess", "_selected_action": [import_file.pk]},
    )
    import_file = wait_for(
        lambda: (f := finished(import_file)) and f.task_id != first_task and f, timeout=90
    )
    assert import_file.status == ImportFile.Status.DONE
    assert import_file.rows_imported == products.good_count
    assert Product.objects.filter(source_file=import_file).count() == products.good_count


def test_a_failed_file_reprocessed_from_the_task_console_is_its_child_with_progress(
    heavy_worker: ManagedProcess, client: Client
) -> None:
    products = product_csv(300, with_bad_rows=False)
    import_file = stored_without_dispatch(csv_file("again.csv", products.content))
    ImportFile.objects.filter(pk=import_file.pk).update(status=ImportFile.Status.FAILED)
    first_task = import_file.task_id
    operator = user_with("change_importfile", username="operator")
    operator.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="taskconsole", codename__in=["view_taskrecord", "launch_task"]
        )
    )
    client.force_login(operator)
    response = client.post(
        "/console/api/launch/",
        json.dumps(
            {
                "task": "imports.tasks.reprocess_import_file",
                "arguments": {"file_id": import_file.pk},
            }
        ),
        content_type="application/json",
    )
    assert response.status_code == 201
    launched_id = response.json()["task_id"]

    import_file = wait_for(
        lambda: (f := finished(import_file)) and f.task_id != first_task and f, timeout=90
    )
    assert import_file.status == ImportFile.Status.DONE
    assert import_file.rows_imported == 300

    def succeeded(task_id: str) -> TaskRecord | None:
        return TaskRecord.objects.filter(task_id=task_id, status=TaskStatus.SUCCESS).first()

    launched = wait_for(lambda: succeeded(launched_id), timeout=30)
    assert (launched.origin, launched.owner_id) == (Origin.CONSOLE, operator.pk)
    assert json.loads(launched.result) == {"file_id": import_file.pk, "queued": 1}
    child = wait_for(lambda: succeeded(import_file.task_id), timeout=30)
    assert child.name == process_import_file.name
    assert child.parent_id == launched_id
    assert {launched.queue, child.queue} == {"heavy_tasks"}
    assert child.worker.startswith("heavy-")
    assert (child.progress_current, child.progress_total) == (300, 300)
    relations = client.get(f"/console/api/tasks/{launched_id}/").json()["relations"]
    assert [r["task_id"] for r in relations["children"]] == [import_file.task_id]
