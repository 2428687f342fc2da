"""Processing one file, run in-process (the integration tests run it on a real worker)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from unittest import mock

import pytest
from celery.exceptions import TimeLimitExceeded
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import translation
from kombu.exceptions import OperationalError as BrokerError
from PIL import Image

from imports import services
from imports.forms import AcceptedFile
from imports.models import ImportBatch, ImportFile, Product, RowError
from imports.tasks import process_import_file, record_import_failure
from myproject.celery import app as celery_app
from reliability import outbox
from reliability.models import OutboxMessage, OutboxStatus
from taskconsole.signals import Cancellation, announce_cancelled

from .factories import (
    CsvFile,
    corrupt_jpeg,
    csv_file,
    image_bytes,
    image_file,
    make_batch,
    product_csv,
)

pytestmark = pytest.mark.django_db


# These tests run inside a transaction that is rolled back, so the dispatch that
# create_batch registers with on_commit never runs: nothing is published.


def batch_of(import_file: ImportFile) -> ImportBatch:
    return ImportBatch.objects.get(pk=import_file.batch_id)


def process(import_file: ImportFile, publish=None) -> ImportFile:
    services.process_file(import_file.pk, import_file.task_id, publish)
    import_file.refresh_from_db()
    return import_file


def only_file(batch: ImportBatch) -> ImportFile:
    return batch.files.get()


def test_create_batch_stores_each_file_before_any_processing(
    media: Path, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        batch = make_batch(
            csv_file("a.csv", product_csv(3).content), image_file("b.png", image_bytes())
        )
    files = list(batch.files.all())
    assert [f.original_name for f in files] == ["a.csv", "b.png"]
    assert all(f.status == ImportFile.Status.QUEUED and f.task_id for f in files)
    for f in files:
        stored = media / f.file.name
        assert stored.is_file()
        assert stored.stat().st_size == f.size
        assert stored.name != f.original_name  # a random name, the original is on the row
    assert batch.status == ImportBatch.Status.QUEUED
    assert len(callbacks) == 1  # one callback, run on commit, sends both files


def jobs(files: list[ImportFile]) -> list[tuple[int, str, int]]:
    """What the upload hands to dispatch_files: each file with its outbox message."""
    return [(f.pk, f.task_id, OutboxMessage.objects.get(task_id=f.task_id).pk) for f in files]


def test_dispatch_sends_one_task_per_file_with_the_stored_task_id() -> None:
    batch = make_batch(csv_file("a.csv", b"sku\n1\n"), csv_file("b.csv", b"sku\n1\n"))
    files = list(batch.files.all())
    with mock.patch.object(process_import_file, "apply_async") as apply_async:
        services.dispatch_files(jobs(files))
    assert apply_async.call_args_list == [
        mock.call((f.pk,), {}, task_id=f.task_id, retry=False, headers=outbox.HEADERS)
        for f in files
    ]


def test_the_import_task_is_routed_to_heavy_tasks() -> None:
    route = celery_app.amqp.router.route({}, process_import_file.name)
    assert route["queue"].name == "heavy_tasks"


def test_a_broker_outage_leaves_the_stored_files_waiting_not_failed(media: Path) -> None:
    batch = make_batch(csv_file("a.csv", b"sku\n1\n"), csv_file("b.csv", b"sku\n1\n"))
    files = list(batch.files.all())
    with mock.patch.object(
        process_import_file, "apply_async", side_effect=BrokerError("connection refused")
    ) as apply_async:
        services.dispatch_files(jobs(files))
    assert apply_async.call_count == 1  # the second file does not wait on a dead broker again
    for f in files:
        f.refresh_from_db()
        assert f.status == ImportFile.Status.NOT_QUEUED
        assert f.error == ""  # the broker's words are logged, not shown as the file's error
        assert f.finished_at is None
        assert (media / f.file.name).is_file()
        # Still in the outbox, which sends it once the broker is back.
        assert OutboxMessage.objects.get(task_id=f.task_id).status == OutboxStatus.PENDING
    batch.refresh_from_db()
    assert batch.status == ImportBatch.Status.NOT_QUEUED
    assert not batch.finished
    assert services.count_not_queued(batch) == 2


def test_a_file_waiting_for_the_broker_is_not_reprocessed_twice() -> None:
    import_file = only_file(make_batch(csv_file("a.csv", b"sku\n1\n")))
    ImportFile.objects.filter(pk=import_file.pk).update(status=ImportFile.Status.NOT_QUEUED)
    # Its task is still in the outbox: a second one would process the file twice.
    assert services.reprocess_files(ImportFile.objects.all()) == 0


def test_a_waiting_file_moves_on_when_its_task_runs() -> None:
    import_file = only_file(make_batch(csv_file("a.csv", product_csv(3).content)))
    ImportFile.objects.filter(pk=import_file.pk).update(status=ImportFile.Status.NOT_QUEUED)
    services.refresh_batch_status(import_file.batch_id)
    assert process(import_file).status == ImportFile.Status.DONE
    import_file.batch.refresh_from_db()
    assert import_file.batch.status == ImportBatch.Status.DONE


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["not_queued", "not_queued"], ImportBatch.Status.NOT_QUEUED),
        (["queued", "not_queued"], ImportBatch.Status.NOT_QUEUED),
        (["done", "not_queued"], ImportBatch.Status.PROCESSING),
        (["failed", "not_queued"], ImportBatch.Status.PROCESSING),
        (["queued", "queued"], ImportBatch.Status.QUEUED),
    ],
)
def test_a_batch_with_waiting_files_is_never_failed(statuses, expected) -> None:
    batch = make_batch(*(csv_file(f"{n}.csv", b"sku\n1\n") for n in range(len(statuses))))
    for import_file, status in zip(batch.files.all(), statuses, strict=True):
        ImportFile.objects.filter(pk=import_file.pk).update(status=status)
    services.refresh_batch_status(batch.pk)
    batch.refresh_from_db()
    assert batch.status == expected
    assert batch.finished_at is None


@pytest.mark.parametrize(
    ("language", "label"), [("en", "waiting for the task queue"), ("zh-hans", "等待消息代理")]
)
def test_the_waiting_status_reads_in_both_languages(language: str, label: str) -> None:
    with translation.override(language):
        assert str(ImportFile.Status.NOT_QUEUED.label) == label
        assert str(ImportBatch.Status.NOT_QUEUED.label) == label


def test_a_failing_store_removes_the_files_already_written(media: Path) -> None:
    first = AcceptedFile(SimpleUploadedFile("a.csv", b"sku\n1\n"), ImportFile.Kind.CSV)
    second = AcceptedFile(SimpleUploadedFile("b.csv", b"sku\n1\n"), ImportFile.Kind.CSV)
    real_save = ImportFile.save
    calls = []

    def failing_save(self, *args, **kwargs):
        calls.append(self)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real_save(self, *args, **kwargs)

    with (
        mock.patch.object(ImportFile, "save", failing_save),
        pytest.raises(RuntimeError, match="disk full"),
    ):
        services.create_batch(None, [first, second])
    assert not ImportBatch.objects.exists()
    assert not [p for p in media.rglob("*") if p.is_file()]


def test_a_csv_is_imported_row_by_row_with_bad_rows_on_their_lines() -> None:
    data = product_csv(100)
    import_file = process(only_file(make_batch(csv_file("p.csv", data.content))))

    assert import_file.status == ImportFile.Status.DONE
    assert import_file.error == ""
    assert import_file.rows_imported == data.good_count == 93
    assert import_file.rows_rejected == len(data.bad) == 7
    assert (import_file.progress_current, import_file.progress_total) == (100, 100)
    assert Product.objects.filter(source_file=import_file).count() == 93
    errors = {e.line_number: e for e in RowError.objects.filter(file=import_file)}
    assert sorted(errors) == sorted(data.bad)
    for line, fragment in data.bad.items():
        assert fragment in errors[line].reason
    # Row 30 repeats row 5's SKU; row 5 sits on line 6 (the header is line 1).
    assert "already appears on line 6" in errors[32].reason
    product = Product.objects.get(source_file=import_file, sku="SKU-000012")
    # Row 12 starts on line 14: line 1 is the header and row 7 spans two lines.
    assert product.line_number == 14
    assert product.price == Decimal("12.12")
    assert product.stock == 12
    assert Product.objects.get(sku="SKU-MULTI").name == "Two\nlines"
    assert import_file.batch.status == ImportBatch.Status.DONE


def test_columns_are_matched_by_name_in_any_order_and_case() -> None:
    content = b"\xef\xbb\xbfStock, Price ,NAME,sku\r\n7,1.50,Tea,T-1\r\n\r\n3,2.00,Mug,M-1\r\n"
    import_file = process(only_file(make_batch(csv_file("p.csv", content))))
    assert import_file.status == ImportFile.Status.DONE
    assert list(Product.objects.values_list("sku", "line_number", "stock")) == [
        ("T-1", 2, 7),
        ("M-1", 4, 3),  # the blank line 3 is skipped, not an error
    ]
    assert import_file.rows_rejected == 0


def test_reprocessing_replaces_the_rows_instead_of_doubling_them() -> None:
    data = product_csv(1200)  # more than one chunk
    import_file = only_file(make_batch(csv_file("p.csv", data.content)))
    process(import_file)
    process(import_file)  # a redelivered message runs the same task id again
    import_file.refresh_from_db()
    assert import_file.rows_imported == data.good_count
    assert Product.objects.filter(source_file=import_file).count() == data.good_count
    assert RowError.objects.filter(file=import_file).count() == len(data.bad)


def test_a_superseded_task_leaves_the_file_alone() -> None:
    import_file = only_file(make_batch(csv_file("p.csv", product_csv(3).content)))
    result = services.process_file(import_file.pk, "an-older-task-id")
    assert result["status"] == "superseded"
    import_file.refresh_from_db()
    assert import_file.status == ImportFile.Status.QUEUED
    assert not Product.objects.exists()


def test_a_deleted_file_is_reported_missing() -> None:
    assert services.process_file(999_999, "x") == {"file_id": 999_999, "status": "missing"}


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (b"sku,name,cost\nA,B,1\n", ["Wrong columns", "Missing: price, stock", "Unexpected: cost"]),
        (b"sku,name,price,stock,sku\n", ["Repeated: sku"]),
        (b"sku,name,price,stock\n", ["has a header but no rows"]),
        (b"", ["The file is empty"]),
        (b"sku,name,price,stock\nA,caf\xe9,1,1\n", ["not UTF-8", "line 2"]),
        (b"sku,name,price,stock\nA,\x00,1,1\n", ["binary data"]),
        (b'sku,name,price,stock\nA,"' + b"x" * 200_000 + b'",1,1\n', ["not valid CSV", "line 2"]),
    ],
)
def test_a_csv_that_cannot_be_read_fails_with_a_clear_message(content, fragments) -> None:
    import_file = process(only_file(make_batch(csv_file("p.csv", content))))
    assert import_file.status == ImportFile.Status.FAILED
    for fragment in fragments:
        assert fragment in import_file.error
    assert not Product.objects.exists()
    assert import_file.batch.status == ImportBatch.Status.FAILED


def test_all_rows_bad_is_done_with_every_row_rejected() -> None:
    data = CsvFile()
    data.add(["A", "x", "no", "1"], "price")
    data.add(["B", "y", "1", "many"], "stock")
    import_file = process(only_file(make_batch(csv_file("p.csv", data.content))))
    assert import_file.status == ImportFile.Status.DONE
    assert (import_file.rows_imported, import_file.rows_rejected) == (0, 2)


def test_row_errors_stored_are_capped_but_all_are_counted(monkeypatch) -> None:
    monkeypatch.setattr(services, "MAX_ROW_ERRORS", 5)
    data = CsvFile()
    for i in range(12):
        data.add([f"S{i}", "x", "bad", "1"], "price")
    import_file = process(only_file(make_batch(csv_file("p.csv", data.content))))
    assert import_file.rows_rejected == 12
    assert RowError.objects.filter(file=import_file).count() == 5


def test_an_image_gets_a_thumbnail_within_the_configured_size(media: Path, settings) -> None:
    settings.IMPORTS_THUMBNAIL_SIZE = (256, 256)
    batch = make_batch(
        image_file("photo.jpg", image_bytes((1000, 500), "JPEG")),
        image_file("logo.png", image_bytes((300, 600), "PNG", mode="RGBA", color=(0, 0, 0, 0))),
    )
    photo, logo = (process(f) for f in batch.files.all())
    for import_file, size, fmt in [(photo, (256, 128), "JPEG"), (logo, (128, 256), "PNG")]:
        assert import_file.status == ImportFile.Status.DONE
        assert (import_file.progress_current, import_file.progress_total) == (1, 1)
        with Image.open(media / import_file.thumbnail.name) as thumbnail:
            assert thumbnail.size == size
            assert thumbnail.format == fmt  # transparency kept as PNG, the rest as JPEG
    batch.refresh_from_db()
    assert batch.status == ImportBatch.Status.DONE


def test_reprocessing_an_image_replaces_its_thumbnail(media: Path) -> None:
    import_file = process(only_file(make_batch(image_file("a.png", image_bytes()))))
    first = media / import_file.thumbnail.name
    process(import_file)
    assert not first.exists()
    assert (media / import_file.thumbnail.name).is_file()
    assert len(list((media / "imports" / "thumbnails").rglob("*.jpg"))) == 1


def test_a_corrupt_image_fails_clearly_and_the_batch_goes_on() -> None:
    batch = make_batch(
        image_file("broken.jpg", corrupt_jpeg()),
        image_file("fine.png", image_bytes()),
    )
    broken, fine = (process(f) for f in batch.files.all())
    assert broken.status == ImportFile.Status.FAILED
    assert "corrupt or truncated" in broken.error
    assert not broken.thumbnail
    assert fine.status == ImportFile.Status.DONE
    batch.refresh_from_db()
    assert batch.status == ImportBatch.Status.PARTIAL


def test_an_image_with_too_many_pixels_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    import_file = process(only_file(make_batch(image_file("a.png", image_bytes((100, 100))))))
    assert import_file.status == ImportFile.Status.FAILED
    assert "too many pixels" in import_file.error


def test_messages_are_written_in_the_uploaders_language() -> None:
    batch = make_batch(csv_file("p.csv", b"sku,name,price,stock\nA,B,abc,1\n"))
    ImportBatch.objects.filter(pk=batch.pk).update(language="zh-hans")
    import_file = process(only_file(batch))
    # Django's own "Enter a number." in Simplified Chinese.
    assert RowError.objects.get(file=import_file).reason == "price：输入一个数字。"


def test_progress_is_published_at_the_start_then_throttled_then_at_the_end() -> None:
    import_file = only_file(make_batch(csv_file("p.csv", product_csv(10).content)))
    now = [0.0]
    published: list[tuple[int, int]] = []
    reporter = services.ProgressReporter(
        import_file.pk, lambda c, t: published.append((c, t)), interval=0.5, clock=lambda: now[0]
    )
    reporter.start(10)
    for current in range(1, 10):
        now[0] += 0.2
        reporter.report(current, imported=current)
    reporter.report(10, imported=10, force=True)
    # 0.2 s a row, a report at most every 0.5 s: rows 3, 6 and 9, plus the start and the end.
    assert published == [(0, 10), (3, 10), (6, 10), (9, 10), (10, 10)]
    import_file.refresh_from_db()
    assert (import_file.progress_current, import_file.progress_total) == (10, 10)
    assert import_file.rows_imported == 10


def test_a_whole_csv_reports_progress_through_the_callback() -> None:
    published: list[tuple[int, int]] = []
    import_file = only_file(make_batch(csv_file("p.csv", product_csv(50).content)))
    process(import_file, lambda c, t: published.append((c, t)))
    assert published[0] == (0, 50)
    assert published[-1] == (50, 50)


def test_the_task_runs_the_service_and_publishes_progress_as_a_custom_state() -> None:
    content = product_csv(20, with_bad_rows=False).content
    import_file = only_file(make_batch(csv_file("p.csv", content)))
    with mock.patch.object(process_import_file, "update_state") as update_state:
        result = process_import_file.apply(args=(import_file.pk,), task_id=import_file.task_id)
    assert result.get() == {
        "file_id": import_file.pk,
        "status": "done",
        "rows_imported": 20,
        "rows_rejected": 0,
        "error": "",
    }
    assert update_state.call_args_list[0] == mock.call(
        state="PROGRESS", meta={"file_id": import_file.pk, "current": 0, "total": 20}
    )


def test_the_task_has_explicit_limits_and_survives_a_lost_worker() -> None:
    assert process_import_file.soft_time_limit == 15 * 60
    assert process_import_file.time_limit == 20 * 60
    assert process_import_file.acks_late
    assert process_import_file.retry_on_worker_lost


def test_a_failure_the_task_could_not_record_is_recorded_by_the_signal() -> None:
    import_file = only_file(make_batch(csv_file("p.csv", product_csv(5).content)))
    ImportFile.objects.filter(pk=import_file.pk).update(status=ImportFile.Status.PROCESSING)
    record_import_failure(
        sender=mock.Mock(name="other"), task_id=import_file.task_id, args=[import_file.pk]
    )
    import_file.refresh_from_db()
    assert import_file.status == ImportFile.Status.PROCESSING  # another task's failure

    record_import_failure(
        sender=process_import_file,
        task_id=import_file.task_id,
        exception=TimeLimitExceeded(1200),
        args=[import_file.pk],
    )
    import_file.refresh_from_db()
    assert import_file.status == ImportFile.Status.FAILED
    assert "TimeLimitExceeded" in import_file.error


@pytest.mark.parametrize(
    ("how", "first"),
    [
        ({}, "Its task was cancelled before it ran."),
        ({"terminated": True}, "Its task was stopped while it ran."),
        ({"expired": True}, "Its task expired before a worker started it."),
    ],
)
def test_a_cancelled_file_fails_with_the_reason_and_its_batch_finishes(how, first) -> None:
    batch = make_batch(
        csv_file("a.csv", product_csv(3).content), csv_file("b.csv", product_csv(2).content)
    )
    cancelled, other = batch.files.order_by("pk")
    process(other)
    assert batch_of(other).status == ImportBatch.Status.PROCESSING
    announce_cancelled(cancelled.task_id, services.PROCESS_TASK, [cancelled.pk], **how)
    cancelled.refresh_from_db()
    assert cancelled.status == ImportFile.Status.FAILED
    assert cancelled.error == (
        f"{first} Nothing from this file was kept. Re-process it from the admin."
    )
    assert batch_of(other).status == ImportBatch.Status.PARTIAL
    # Told again (the console, then the worker that discards the message): nothing changes.
    assert not services.record_cancelled(Cancellation(cancelled.task_id, services.PROCESS_TASK))
    # Another task's id: not this file's.
    assert not services.record_cancelled(Cancellation("no-such-task", services.PROCESS_TASK))


def test_a_file_a_worker_started_before_the_consoles_word_is_processed_on() -> None:
    import_file = only_file(make_batch(csv_file("a.csv", product_csv(3).content)))
    ImportFile.objects.filter(pk=import_file.pk).update(status=ImportFile.Status.PROCESSING)
    cancelled = Cancellation(import_file.task_id, services.PROCESS_TASK)
    assert not services.record_cancelled(cancelled)
    import_file.refresh_from_db()
    assert import_file.status == ImportFile.Status.PROCESSING
    # Stopped while it ran: failed, keeping nothing.
    stopped = Cancellation(import_file.task_id, services.PROCESS_TASK, terminated=True)
    assert services.record_cancelled(stopped)
    import_file.refresh_from_db()
    assert import_file.status == ImportFile.Status.FAILED


def test_a_cancelled_file_says_so_in_its_uploaders_language() -> None:
    batch = make_batch(csv_file("a.csv", product_csv(3).content))
    ImportBatch.objects.filter(pk=batch.pk).update(language="zh-hans")
    import_file = only_file(batch)
    announce_cancelled(import_file.task_id, "imports.tasks.other")
    import_file.refresh_from_db()
    assert import_file.status == ImportFile.Status.QUEUED
    announce_cancelled(import_file.task_id, services.PROCESS_TASK)
    import_file.refresh_from_db()
    assert (
        import_file.error
        == "它的任务在运行前被取消了。此文件的内容均未保留。请在管理后台重新处理。"
    )


def test_an_unexpected_error_marks_the_file_failed_and_reraises() -> None:
    import_file = only_file(make_batch(csv_file("p.csv", product_csv(5).content)))
    with (
        mock.patch.object(services, "import_csv", side_effect=KeyError("boom")),
        pytest.raises(KeyError),
    ):
        services.process_file(import_file.pk, import_file.task_id)
    import_file.refresh_from_db()
    assert import_file.status == ImportFile.Status.FAILED
    assert "stopped unexpectedly" in import_file.error
    assert "KeyError" in import_file.error


def test_reprocess_queues_only_failed_files_with_a_new_task_id(
    django_capture_on_commit_callbacks,
) -> None:
    batch = make_batch(
        image_file("broken.jpg", corrupt_jpeg()), image_file("fine.png", image_bytes())
    )
    broken, fine = (process(f) for f in batch.files.all())
    old_task_id = broken.task_id
    with django_capture_on_commit_callbacks() as callbacks:
        queued = services.reprocess_files(ImportFile.objects.filter(batch=batch))
    assert queued == 1
    broken.refresh_from_db()
    fine.refresh_from_db()
    assert broken.status == ImportFile.Status.QUEUED
    assert broken.task_id != old_task_id
    assert broken.error == ""
    assert fine.status == ImportFile.Status.DONE
    batch.refresh_from_db()
    assert batch.status == ImportBatch.Status.PROCESSING
    assert len(callbacks) == 1
    with mock.patch.object(process_import_file, "apply_async") as apply_async:
        callbacks[0]()
    apply_async.assert_called_once_with(
        (broken.pk,), {}, task_id=broken.task_id, retry=False, headers=outbox.HEADERS
    )
