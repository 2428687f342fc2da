"""File batches: storing uploads, dispatching them, and processing one file (the task's work).

A file is stored and its row committed before any task is sent, so a worker that dies loses
nothing: the message is delivered again (acks_late) and processing starts over. Starting over is
safe because processing first removes whatever an earlier run of the same file wrote.

IMPORTS_TEST_ROW_DELAY (environment, seconds): a pause after each CSV row, read by the worker.
Tests set it in the worker's environment so that an import lasts long enough to be watched
(progress) or interrupted (a killed worker). Leave it unset anywhere else.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import PurePath
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from celery.result import AsyncResult
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Count, QuerySet
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from PIL import ImageOps

from operations.text import listed, sentences, written_in
from reliability import outbox
from taskconsole.signals import Cancellation

from .forms import PRODUCT_COLUMNS, AcceptedFile, ProductRowForm
from .models import ImportBatch, ImportFile, Product, RowError
from .validators import ImageBombError, open_image

logger = logging.getLogger(__name__)

#: Rows written per INSERT (and per transaction), so a big file is neither one huge
#: transaction nor one round trip per row.
CHUNK_SIZE = 500
#: Row errors stored per file; past it they are only counted, so a file of garbage cannot
#: fill the table.
MAX_ROW_ERRORS = 1000
#: Progress is written (row and task state) at most this often, in seconds.
PROGRESS_INTERVAL = 0.5
TEST_ROW_DELAY_ENV = "IMPORTS_TEST_ROW_DELAY"

Publish = Callable[[int, int], None]


class ImportRejected(Exception):
    """The file cannot be processed; the message says why, for the person who uploaded it."""


# Uploading and dispatching
# ------------------------------------------------------------------------------


PROCESS_TASK = "imports.tasks.process_import_file"


def new_task_id() -> str:
    return str(uuid.uuid4())


def create_batch(
    user: AbstractBaseUser | None, files: Iterable[AcceptedFile], language: str = ""
) -> ImportBatch:
    """Store the files and their rows in one transaction; dispatch them once it commits."""
    stored: list[ImportFile] = []
    try:
        with transaction.atomic():
            batch = ImportBatch.objects.create(created_by=user, language=language)
            for accepted in files:
                upload = accepted.upload
                import_file = ImportFile(
                    batch=batch,
                    kind=accepted.kind,
                    original_name=(upload.name or "")[:255],
                    size=upload.size or 0,
                    task_id=new_task_id(),
                )
                import_file.file.save(upload.name or "upload", upload, save=False)
                stored.append(import_file)
                import_file.save()
            _dispatch_on_commit(stored)
    except Exception:
        # The rows were rolled back: remove the files already written, or they would be orphans.
        for import_file in stored:
            import_file.file.delete(save=False)
        raise
    return batch


def reprocess_files(files: QuerySet[ImportFile]) -> int:
    """Queue the failed files among `files` again; return how many were queued."""
    with transaction.atomic():
        # Locked by primary key alone: the caller's queryset may join other tables.
        ids = list(files.values_list("pk", flat=True))
        failed = list(
            ImportFile.objects.select_for_update()
            .filter(pk__in=ids, status=ImportFile.Status.FAILED)
            .order_by("pk")
        )
        for import_file in failed:
            import_file.status = ImportFile.Status.QUEUED
            import_file.task_id = new_task_id()
            import_file.error = ""
            import_file.progress_current = import_file.progress_total = 0
            import_file.started_at = import_file.finished_at = None
            import_file.save(
                update_fields=[
                    "status",
                    "task_id",
                    "error",
                    "progress_current",
                    "progress_total",
                    "started_at",
                    "finished_at",
                ]
            )
        for batch_id in sorted({f.batch_id for f in failed}):
            refresh_batch_status(batch_id)
        _dispatch_on_commit(failed)
    return len(failed)


def _dispatch_on_commit(files: Sequence[ImportFile]) -> None:
    jobs = []
    for f in files:
        # In the caller's transaction: committed with the rows, so the outbox sweeper sends
        # the task even if the broker is down (or loses it) when the commit sends it below.
        message = outbox.enqueue(PROCESS_TASK, (f.pk,), task_id=f.task_id)
        jobs.append((f.pk, f.task_id, message.pk))
    if jobs:
        # robust: a failure here is handled inside dispatch_files and must never turn a
        # committed upload into an error page.
        transaction.on_commit(partial(dispatch_files, jobs), robust=True)


def dispatch_files(jobs: Sequence[tuple[int, str, int]]) -> None:
    """Publish each file's outbox message (file id, task id, message id), in order."""
    for position, (_file_id, _task_id, message_id) in enumerate(jobs):
        if outbox.publish(message_id) or outbox.is_sent(message_id):
            continue
        error = outbox.last_error(message_id)
        if not error:
            # Not refused by the broker: the sweeper is sending it this moment (or the
            # database did not answer); the outbox sees it through.
            continue
        # The broker's own words go to the log only: the person sees the file's status.
        logger.error("Could not queue imported files %s: %s", jobs[position:], error)
        # The broker is down for the rest as well: do not wait on it once per file. Their
        # messages stay in the outbox, which sends them once the broker is back.
        for unqueued_id, unqueued_task, _message_id in jobs[position:]:
            _mark_unqueued(unqueued_id, unqueued_task)
        return


def _mark_unqueued(file_id: int, task_id: str) -> None:
    # Waiting, not failed: nothing is wrong with the file, and its message is still in the
    # outbox. Only a file still queued under this task: a worker that got the message from the
    # sweeper meanwhile has moved it on, and its state wins.
    marked = ImportFile.objects.filter(
        pk=file_id, task_id=task_id, status=ImportFile.Status.QUEUED
    ).update(status=ImportFile.Status.NOT_QUEUED)
    if marked:
        batch_id = ImportFile.objects.values_list("batch_id", flat=True).get(pk=file_id)
        refresh_batch_status(batch_id)


def on_outbox_published(
    sender: Any = None, task_name: str = "", task_id: str = "", **_: Any
) -> None:
    """The outbox sent a file's task the broker had not taken: the file is queued now."""
    if task_name != PROCESS_TASK:
        return  # another app's message: no query on its request's path
    marked = ImportFile.objects.filter(task_id=task_id, status=ImportFile.Status.NOT_QUEUED)
    batch_id = marked.values_list("batch_id", flat=True).first()
    if batch_id is not None and marked.update(status=ImportFile.Status.QUEUED):
        refresh_batch_status(batch_id)


def count_not_queued(batch: ImportBatch) -> int:
    """How many of the batch's files wait for the broker to take their task."""
    return batch.files.filter(status=ImportFile.Status.NOT_QUEUED).count()


# Processing one file (the task's work)
# ------------------------------------------------------------------------------


def process_file(
    file_id: int, task_id: str | None = None, publish: Publish | None = None
) -> dict[str, Any]:
    """Process one stored file from scratch; `publish(current, total)` reports progress."""
    import_file = ImportFile.objects.select_related("batch").filter(pk=file_id).first()
    if import_file is None:
        logger.warning("Imported file %s no longer exists; nothing to do.", file_id)
        return {"file_id": file_id, "status": "missing"}
    if task_id and import_file.task_id and import_file.task_id != task_id:
        # The file was queued again (re-process) after this message was sent: the newer task
        # owns it now, and running both would interleave their writes.
        logger.info(
            "Task %s for file %s was superseded by %s.", task_id, file_id, import_file.task_id
        )
        return {"file_id": file_id, "status": "superseded"}

    with _language_of(import_file):
        _start(import_file)
        progress = ProgressReporter(import_file.pk, publish)
        try:
            if import_file.kind == ImportFile.Kind.CSV:
                import_csv(import_file, progress)
            else:
                make_thumbnail(import_file, progress)
        except ImportRejected as exc:
            _fail(import_file, str(exc))
        except SoftTimeLimitExceeded:
            _fail(
                import_file,
                _(
                    "Processing took longer than the time limit and was stopped; nothing "
                    "from this file was kept. Split the file and upload the parts."
                ),
            )
            raise
        except Exception as exc:
            _fail(import_file, _unexpected_error(exc))
            raise
        else:
            _finish(import_file, progress)
    return {
        "file_id": import_file.pk,
        "status": import_file.status,
        "rows_imported": import_file.rows_imported,
        "rows_rejected": import_file.rows_rejected,
        "error": import_file.error,
    }


def fail_unfinished_file(file_id: int | None, task_id: str | None, exc: BaseException) -> bool:
    """Record a failure the task could not record itself (hard time limit, lost worker)."""
    import_file = (
        ImportFile.objects.select_related("batch")
        .filter(pk=file_id, task_id=task_id)
        .exclude(status__in=[ImportFile.Status.DONE, ImportFile.Status.FAILED])
        .first()
    )
    if import_file is None:
        return False
    with _language_of(import_file):
        _fail(import_file, _unexpected_error(exc))
    return True


def record_cancelled(cancellation: Cancellation) -> bool:
    """The file's task was cancelled, expired or stopped: the file fails with that reason
    (keeping nothing), so its batch can finish. True if a file was waiting for that task."""
    # Stopped while it ran: whatever it was doing. Otherwise only a file still waiting: a
    # worker may have started it a moment before the console's word, and it runs to its end.
    waiting = [ImportFile.Status.NOT_QUEUED, ImportFile.Status.QUEUED]
    import_file = (
        ImportFile.objects.select_related("batch")
        .filter(task_id=cancellation.task_id, status__in=[*waiting, ImportFile.Status.PROCESSING])
        .first()
    )
    if import_file is None or (import_file.status not in waiting and not cancellation.terminated):
        return False
    with _language_of(import_file):
        first = cancellation.reason(
            _("Its task expired before a worker started it."),
            _("Its task was stopped while it ran."),
            _("Its task was cancelled before it ran."),
        )
        _fail(
            import_file,
            sentences(first, _("Nothing from this file was kept. Re-process it from the admin.")),
        )
    return True


def _unexpected_error(exc: BaseException) -> str:
    return _(
        "Processing stopped unexpectedly (%(error)s); nothing from this file was kept. "
        "Re-process it from the admin."
    ) % {"error": f"{type(exc).__name__}: {exc}".rstrip(": ")}


def _language_of(import_file: ImportFile) -> translation.override:
    # Messages are stored in the uploader's language, not the worker's.
    return written_in(import_file.batch.language)


def _start(import_file: ImportFile) -> None:
    with transaction.atomic():
        # A redelivered or re-processed file starts from nothing, so rows are never doubled.
        import_file.products.all().delete()
        import_file.row_errors.all().delete()
        if import_file.thumbnail:
            import_file.thumbnail.delete(save=False)
        import_file.thumbnail = ""
        import_file.status = ImportFile.Status.PROCESSING
        import_file.started_at = timezone.now()
        import_file.finished_at = None
        import_file.error = ""
        import_file.progress_current = import_file.progress_total = 0
        import_file.rows_imported = import_file.rows_rejected = 0
        import_file.save(
            update_fields=[
                "thumbnail",
                "status",
                "started_at",
                "finished_at",
                "error",
                "progress_current",
                "progress_total",
                "rows_imported",
                "rows_rejected",
            ]
        )
    refresh_batch_status(import_file.batch_id)


def _finish(import_file: ImportFile, progress: ProgressReporter) -> None:
    import_file.status = ImportFile.Status.DONE
    import_file.finished_at = timezone.now()
    import_file.progress_total = progress.total
    import_file.progress_current = progress.total
    import_file.rows_imported = progress.imported
    import_file.rows_rejected = progress.rejected
    import_file.save(
        update_fields=[
            "status",
            "finished_at",
            "progress_current",
            "progress_total",
            "rows_imported",
            "rows_rejected",
            "thumbnail",
        ]
    )
    refresh_batch_status(import_file.batch_id)


def _fail(import_file: ImportFile, error: str) -> None:
    with transaction.atomic():
        # A failed file keeps nothing, so its products are all or nothing.
        import_file.products.all().delete()
        import_file.row_errors.all().delete()
        if import_file.thumbnail:
            import_file.thumbnail.delete(save=False)
        import_file.thumbnail = ""
        import_file.status = ImportFile.Status.FAILED
        import_file.error = error
        import_file.finished_at = timezone.now()
        import_file.rows_imported = import_file.rows_rejected = 0
        import_file.save(
            update_fields=[
                "thumbnail",
                "status",
                "error",
                "finished_at",
                "rows_imported",
                "rows_rejected",
            ]
        )
    refresh_batch_status(import_file.batch_id)


def refresh_batch_status(batch_id: int) -> None:
    """Derive the batch's status from its files'."""
    with transaction.atomic():
        # Locked, so two workers finishing files of one batch at once cannot both write a
        # status computed before the other's file was done.
        batch = ImportBatch.objects.select_for_update().get(pk=batch_id)
        counts = dict(batch.files.order_by().values_list("status").annotate(n=Count("id")))
        not_queued = counts.get(ImportFile.Status.NOT_QUEUED, 0)
        queued = counts.get(ImportFile.Status.QUEUED, 0)
        processing = counts.get(ImportFile.Status.PROCESSING, 0)
        unfinished = not_queued + queued + processing
        done = counts.get(ImportFile.Status.DONE, 0)
        failed = counts.get(ImportFile.Status.FAILED, 0)
        if unfinished:
            if processing + done + failed:
                status = ImportBatch.Status.PROCESSING
            elif not_queued:
                status = ImportBatch.Status.NOT_QUEUED
            else:
                status = ImportBatch.Status.QUEUED
        elif not failed:
            status = ImportBatch.Status.DONE
        elif not done:
            status = ImportBatch.Status.FAILED
        else:
            status = ImportBatch.Status.PARTIAL
        finished_at = None if unfinished else batch.finished_at or timezone.now()
        if (status, finished_at) != (batch.status, batch.finished_at):
            batch.status = status
            batch.finished_at = finished_at
            batch.save(update_fields=["status", "finished_at"])


class ProgressReporter:
    """Writes progress to the file's row and publishes it, at most every `interval` seconds."""

    def __init__(
        self,
        file_id: int,
        publish: Publish | None = None,
        interval: float = PROGRESS_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.file_id = file_id
        self.publish = publish
        self.interval = interval
        self.clock = clock
        self.total = 0
        self.current = 0
        self.imported = 0
        self.rejected = 0
        self._last = float("-inf")

    def start(self, total: int) -> None:
        self.total = total
        self.report(0, force=True)

    def report(
        self, current: int, imported: int = 0, rejected: int = 0, force: bool = False
    ) -> None:
        self.current, self.imported, self.rejected = current, imported, rejected
        now = self.clock()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        ImportFile.objects.filter(pk=self.file_id).update(
            progress_current=current,
            progress_total=self.total,
            rows_imported=imported,
            rows_rejected=rejected,
        )
        if self.publish is not None:
            self.publish(current, self.total)


# CSV files
# ------------------------------------------------------------------------------


def import_csv(import_file: ImportFile, progress: ProgressReporter) -> None:
    """Import a product CSV row by row: valid rows in chunks, bad rows as RowError."""
    with import_file.file.open("rb") as stream:
        text = _decode(stream.read())
    records = sum(1 for _record in _records(text))
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(_checked(reader), None)
    if header is None:
        raise ImportRejected(_("The file is empty."))
    positions = _column_positions(header)
    total = records - 1
    if total <= 0:
        raise ImportRejected(_("The file has a header but no rows."))

    progress.start(total)
    rows = _RowImporter(import_file, positions, width=len(header))
    delay = _test_row_delay()
    previous_end = reader.line_num
    for done, record in enumerate(_checked(reader), start=1):
        # line_num is where the record ends; a quoted field may span lines, so the record
        # starts right after the previous one ended.
        first_line, previous_end = previous_end + 1, reader.line_num
        if any(cell.strip() for cell in record):
            rows.add(first_line, record)
        progress.report(done, rows.imported, rows.rejected)
        if delay:
            time.sleep(delay)
    rows.flush()
    progress.report(total, rows.imported, rows.rejected, force=True)


def _decode(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ImportRejected(
            _(
                "The file is not UTF-8 text (the first invalid byte is on line %(line)s). "
                "Save it as “CSV UTF-8” and upload it again."
            )
            % {"line": line}
        ) from exc
    if "\x00" in text:
        raise ImportRejected(_("The file contains binary data, so it is not a CSV file."))
    return text


def _records(text: str) -> Iterator[list[str]]:
    return _checked(csv.reader(io.StringIO(text, newline="")))


def _checked(reader: Any) -> Iterator[list[str]]:
    try:
        yield from reader
    except csv.Error as exc:
        raise ImportRejected(
            _("The file is not valid CSV (line %(line)s: %(error)s).")
            % {"line": reader.line_num, "error": exc}
        ) from exc


def _column_positions(header: list[str]) -> dict[str, int]:
    names = [name.strip().lower() for name in header]
    missing = [column for column in PRODUCT_COLUMNS if column not in names]
    unexpected = [name or _("(empty)") for name in names if name not in PRODUCT_COLUMNS]
    repeated = sorted({name for name in names if name in PRODUCT_COLUMNS and names.count(name) > 1})
    if missing or unexpected or repeated:
        parts = [
            _("Wrong columns: the header must name exactly %(columns)s, in any order.")
            % {"columns": listed(PRODUCT_COLUMNS)}
        ]
        if missing:
            parts.append(_("Missing: %(columns)s.") % {"columns": listed(missing)})
        if unexpected:
            parts.append(_("Unexpected: %(columns)s.") % {"columns": listed(unexpected)})
        if repeated:
            parts.append(_("Repeated: %(columns)s.") % {"columns": listed(repeated)})
        raise ImportRejected(sentences(*parts))
    return {column: names.index(column) for column in PRODUCT_COLUMNS}


class _RowImporter:
    """Validates rows and writes them, with their errors, a chunk at a time."""

    def __init__(self, import_file: ImportFile, positions: dict[str, int], width: int) -> None:
        self.import_file = import_file
        self.positions = positions
        self.width = width
        self.imported = 0
        self.rejected = 0
        self._products: list[Product] = []
        self._errors: list[RowError] = []
        self._stored_errors = 0
        self._seen: dict[str, int] = {}

    def add(self, line: int, record: list[str]) -> None:
        if len(record) != self.width:
            self._reject(
                line,
                record,
                _("Expected %(expected)s fields, found %(found)s.")
                % {"expected": self.width, "found": len(record)},
            )
            return
        form = ProductRowForm({name: record[index] for name, index in self.positions.items()})
        if not form.is_valid():
            reason = sentences(
                *(
                    _("%(field)s: %(errors)s") % {"field": field, "errors": sentences(*messages)}
                    for field, messages in form.errors.items()
                )
            )
            self._reject(line, record, reason)
            return
        data = form.cleaned_data
        if data["sku"] in self._seen:
            self._reject(
                line,
                record,
                _("sku: %(sku)s already appears on line %(line)s.")
                % {"sku": data["sku"], "line": self._seen[data["sku"]]},
            )
            return
        self._seen[data["sku"]] = line
        self._products.append(
            Product(
                source_file=self.import_file,
                line_number=line,
                sku=data["sku"],
                name=data["name"],
                price=data["price"],
                stock=data["stock"],
            )
        )
        self.imported += 1
        if len(self._products) >= CHUNK_SIZE:
            self.flush()

    def _reject(self, line: int, record: list[str], reason: str) -> None:
        self.rejected += 1
        if self._stored_errors < MAX_ROW_ERRORS:
            self._stored_errors += 1
            self._errors.append(
                RowError(
                    file=self.import_file,
                    line_number=line,
                    reason=reason,
                    content=",".join(record)[:500],
                )
            )
        if len(self._errors) >= CHUNK_SIZE:
            self.flush()

    def flush(self) -> None:
        with transaction.atomic():
            Product.objects.bulk_create(self._products)
            RowError.objects.bulk_create(self._errors)
        self._products.clear()
        self._errors.clear()


def _test_row_delay() -> float:
    try:
        return max(0.0, float(os.environ.get(TEST_ROW_DELAY_ENV) or 0))
    except ValueError:
        return 0.0


# Images
# ------------------------------------------------------------------------------


def make_thumbnail(import_file: ImportFile, progress: ProgressReporter) -> None:
    """Store a thumbnail no larger than IMPORTS_THUMBNAIL_SIZE, keeping the aspect ratio."""
    progress.start(1)
    with import_file.file.open("rb") as stream:
        data = stream.read()
    try:
        with open_image(io.BytesIO(data)) as image:
            image.verify()
        # verify() leaves the image unusable and skips the pixel data: decode it for real,
        # which is where a truncated file shows.
        with open_image(io.BytesIO(data)) as image:
            image.load()
            thumbnail = ImageOps.exif_transpose(image)
        thumbnail.thumbnail(settings.IMPORTS_THUMBNAIL_SIZE)
        output = io.BytesIO()
        if thumbnail.mode in {"RGBA", "LA", "PA"} or "transparency" in thumbnail.info:
            thumbnail.convert("RGBA").save(output, "PNG", optimize=True)
            suffix = ".png"
        else:
            thumbnail.convert("RGB").save(output, "JPEG", quality=85)
            suffix = ".jpg"
    except ImageBombError as exc:
        raise ImportRejected(_("The image has too many pixels to process safely.")) from exc
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:
        # Pillow reports damaged data with many exception types; all mean the same here.
        raise ImportRejected(
            _("The image is corrupt or truncated and cannot be read (%(error)s).") % {"error": exc}
        ) from exc
    stem = PurePath(import_file.original_name).stem or "image"
    import_file.thumbnail.save(f"{stem}{suffix}", ContentFile(output.getvalue()), save=False)
    progress.report(1, force=True)


# What the pages show
# ------------------------------------------------------------------------------


def batch_status(batch: ImportBatch) -> dict[str, Any]:
    """The batch as the page and its JSON endpoint show it: one source for both."""
    files = list(batch.files.all())
    states = _task_states(files)
    return {
        "id": batch.pk,
        "status": batch.status,
        "status_display": batch.get_status_display(),
        "finished": batch.finished,
        "files": [file_status(f, states.get(f.task_id)) for f in files],
    }


def _task_states(files: Sequence[ImportFile]) -> dict[str, str]:
    """The Celery states of the unfinished files' tasks, in one query where results are rows.

    The batch page polls this every second, so it must not ask once per file.
    """
    ids = [f.task_id for f in files if f.task_id and not _finished(f)]
    if not ids:
        return {}
    if settings.CELERY_RESULT_BACKEND == "django-db":
        from django_celery_results.models import TaskResult

        found = dict(TaskResult.objects.filter(task_id__in=ids).values_list("task_id", "status"))
        return {task_id: found.get(task_id, "PENDING") for task_id in ids}
    return {task_id: AsyncResult(task_id).state for task_id in ids}


def _finished(import_file: ImportFile) -> bool:
    return import_file.status in {ImportFile.Status.DONE, ImportFile.Status.FAILED}


def file_status(import_file: ImportFile, task_state: str | None = None) -> dict[str, Any]:
    finished = _finished(import_file)
    return {
        "id": import_file.pk,
        "name": import_file.original_name,
        "kind": import_file.kind,
        "kind_display": import_file.get_kind_display(),
        "size": import_file.size,
        "status": import_file.status,
        "status_display": import_file.get_status_display(),
        "current": import_file.progress_current,
        "total": import_file.progress_total,
        "percent": import_file.percent,
        "rows_imported": import_file.rows_imported,
        "rows_rejected": import_file.rows_rejected,
        "error": import_file.error,
        # The Celery state (PENDING, STARTED, PROGRESS...) while the file is not finished.
        "task_state": (
            (task_state or AsyncResult(import_file.task_id).state)
            if import_file.task_id and not finished
            else None
        ),
        "thumbnail_url": (
            reverse("imports:thumbnail", args=[import_file.pk]) if import_file.thumbnail else None
        ),
    }
