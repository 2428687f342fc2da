"""The upload page: login and permission, several files at once, size and type limits."""

from __future__ import annotations

import io
from pathlib import Path
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from PIL import Image

from imports.models import ImportBatch, ImportFile
from imports.tasks import process_import_file
from imports.validators import CSV_SNIFF_BYTES, validate_upload
from reliability import outbox
from reliability.models import OutboxMessage, OutboxStatus

from .factories import (
    corrupt_jpeg,
    csv_file,
    image_bytes,
    image_file,
    make_batch,
    product_csv,
    user_with,
)

pytestmark = pytest.mark.django_db

INDEX = reverse("imports:index")
UPLOAD = reverse("imports:upload")


@pytest.fixture
def uploader(client: Client):
    user = user_with("add_importbatch")
    client.force_login(user)
    return user


def upload(name: str, content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content)


def page_messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_anonymous_visitors_are_sent_to_the_login_page(client: Client) -> None:
    for response in (client.get(INDEX), client.post(UPLOAD, {})):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    assert not ImportBatch.objects.exists()


def test_a_user_without_the_permission_is_refused(client: Client) -> None:
    client.force_login(user_with())
    assert client.get(INDEX).status_code == 403
    response = client.post(UPLOAD, {"files": [upload("a.csv", b"sku\n1\n")]})
    assert response.status_code == 403
    assert not ImportBatch.objects.exists()


def test_the_page_documents_the_columns_and_limits(client: Client, uploader, settings) -> None:
    settings.IMPORTS_MAX_FILE_SIZE = 5 * 1024 * 1024
    response = client.get(INDEX)
    assert response.status_code == 200
    body = response.content.decode()
    for column in ("sku", "name", "price", "stock"):
        assert f"<code>{column}</code>" in body
    assert "5.0\xa0MB" in body
    assert 'type="file"' in body
    assert "multiple" in body
    assert 'enctype="multipart/form-data"' in body


def test_upload_only_accepts_post(client: Client, uploader) -> None:
    assert client.get(UPLOAD).status_code == 405


def test_upload_needs_the_csrf_token(uploader) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(uploader)
    response = client.post(UPLOAD, {"files": [upload("a.csv", b"sku\n1\n")]})
    assert response.status_code == 403
    assert not ImportBatch.objects.exists()


def test_several_files_are_stored_and_bad_ones_refused_without_stopping_the_rest(
    client: Client, uploader, settings, media: Path, django_capture_on_commit_callbacks
) -> None:
    settings.IMPORTS_MAX_FILE_SIZE = 200_000
    files = [
        upload("products.csv", product_csv(50).content),
        upload("photo.jpg", image_bytes((640, 480), "JPEG")),
        upload("logo.png", image_bytes((64, 64), "PNG")),
        upload("notes.txt", b"hello"),
        upload("fake.png", b"this is not a png"),
        upload("binary.csv", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe"),
        upload("huge.csv", b"sku,name,price,stock\n" + b"A,B,1,1\n" * 40_000),
        upload("empty.csv", b""),
    ]
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(UPLOAD, {"files": files}, follow=True)

    batch = ImportBatch.objects.get()
    assert response.redirect_chain == [(reverse("imports:batch", args=[batch.pk]), 302)]
    stored = list(batch.files.all())
    assert [(f.original_name, f.kind) for f in stored] == [
        ("products.csv", "csv"),
        ("photo.jpg", "image"),
        ("logo.png", "image"),
    ]
    for f in stored:
        assert (media / f.file.name).read_bytes()[:4] == next(
            u for u in files if u.name == f.original_name
        ).file.getvalue()[:4]
    assert batch.created_by == uploader
    text = "\n".join(page_messages(response))
    assert "“notes.txt” was not accepted: its type is not accepted" in text
    assert "“fake.png” was not accepted: it is not a valid image" in text
    assert "“binary.csv” was not accepted: it is not UTF-8 text" in text
    assert "“huge.csv” was not accepted: it is over the limit of 195.3\xa0KB" in text
    assert "“empty.csv” was not accepted: it is empty." in text
    assert "3 files stored and queued for processing." in text
    # The file over the limit was dropped while it arrived: nothing of it reached the disk.
    assert len([p for p in media.rglob("*") if p.is_file()]) == 3

    # One task per stored file, sent once the rows are committed, with the ids on the rows.
    assert len(callbacks) == 1
    with mock.patch.object(process_import_file, "apply_async") as apply_async:
        callbacks[0]()
    assert apply_async.call_args_list == [
        mock.call((f.pk,), {}, task_id=f.task_id, retry=False, headers=outbox.HEADERS)
        for f in stored
    ]


def test_when_every_file_is_refused_nothing_is_stored(
    client: Client, uploader, media: Path, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            UPLOAD, {"files": [upload("a.exe", b"MZ"), upload("b.gif", b"GIF89a nonsense")]}
        )
    assert response.status_code == 400
    assert "No file was accepted." in response.content.decode()
    assert len(page_messages(response)) == 2
    assert not ImportBatch.objects.exists()
    assert not media.exists() or not [p for p in media.rglob("*") if p.is_file()]
    assert callbacks == []


def test_choosing_no_file_is_an_error(client: Client, uploader) -> None:
    response = client.post(UPLOAD, {})
    assert response.status_code == 400
    assert "Choose at least one file." in response.content.decode()


def test_a_file_over_the_limit_alone_is_reported_not_required(
    client: Client, uploader, settings
) -> None:
    settings.IMPORTS_MAX_FILE_SIZE = 1000
    response = client.post(UPLOAD, {"files": [upload("big.csv", b"sku\n" + b"x\n" * 1000)]})
    assert response.status_code == 400
    assert "“big.csv” was not accepted: it is over the limit of 1000\xa0bytes." in page_messages(
        response
    )


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("a.csv", b"sku,name\n" + "é".encode() * CSV_SNIFF_BYTES, None),
        ("a.CSV", b"sku,name,price,stock\n", None),
        ("a.jpeg", image_bytes((10, 10), "JPEG"), None),
        ("a.gif", image_bytes((10, 10), "GIF"), None),
        ("a.webp", image_bytes((10, 10), "WEBP"), None),
        ("a.csv", b",name\n", "header of column names"),
        ("a.csv", "sku;name\n".encode("utf-16"), "not UTF-8"),
        ("a.csv", b"sku,na\x00me\n", "binary data"),
        ("a.png", image_bytes((10, 10), "BMP"), "not a valid image"),
        ("a.png", image_bytes((10, 10), "PNG")[:30], "not a valid image"),
        ("a.pdf", b"%PDF-1.4", "type is not accepted"),
        ("noextension", b"sku\n", "type is not accepted"),
    ],
)
def test_type_is_checked_by_extension_and_by_content(name, content, reason) -> None:
    uploaded = upload(name, content)
    if reason is None:
        assert validate_upload(uploaded) in {ImportFile.Kind.CSV, ImportFile.Kind.IMAGE}
        assert uploaded.tell() == 0  # left ready to be stored
    else:
        with pytest.raises(Exception, match=reason):
            validate_upload(uploaded)


def test_an_image_bomb_is_refused_at_upload(monkeypatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(Exception, match="too many pixels"):
        validate_upload(upload("a.png", image_bytes((100, 100))))


def test_the_batch_page_shows_the_files_and_polls_while_unfinished(client: Client, uploader):
    batch = make_batch(csv_file("p.csv", b"sku\n1\n"), user=uploader)
    response = client.get(reverse("imports:batch", args=[batch.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "p.csv" in body
    assert reverse("imports:batch_status", args=[batch.pk]) in body
    assert "<progress" in body


def test_the_batch_page_says_who_uploaded_it_in_one_sentence_in_chinese(
    client: Client, uploader
) -> None:
    batch = make_batch(csv_file("p.csv", b"sku\n1\n"), user=uploader)
    body = client.get(
        reverse("imports:batch", args=[batch.pk]), HTTP_ACCEPT_LANGUAGE="zh-hans"
    ).content.decode()
    assert f"由 {uploader.get_username()} 于 " in body
    assert "上传者" not in body
    # The accepted types of the upload form, listed the Chinese way.
    index = client.get(reverse("imports:index"), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert ".csv、.gif" in index


def test_the_status_endpoint_reports_each_files_progress(client: Client, uploader) -> None:
    batch = make_batch(csv_file("p.csv", b"sku\n1\n"), user=uploader)
    ImportFile.objects.filter(batch=batch).update(
        status=ImportFile.Status.PROCESSING, progress_current=250, progress_total=1000
    )
    data = client.get(reverse("imports:batch_status", args=[batch.pk])).json()
    assert data["id"] == batch.pk
    assert data["finished"] is False
    [entry] = data["files"]
    assert entry["name"] == "p.csv"
    assert entry["status"] == "processing"
    assert (entry["current"], entry["total"], entry["percent"]) == (250, 1000, 25)
    assert entry["task_state"] == "PENDING"  # nothing ran it: no result stored


def test_a_batch_is_visible_to_its_owner_and_to_viewers_only(client: Client, uploader) -> None:
    batch = make_batch(csv_file("p.csv", b"sku\n1\n"), user=uploader)
    urls = [
        reverse("imports:batch", args=[batch.pk]),
        reverse("imports:batch_status", args=[batch.pk]),
    ]
    client.force_login(user_with("add_importbatch", username="other"))
    assert [client.get(url).status_code for url in urls] == [404, 404]
    client.force_login(user_with("view_importbatch", username="viewer"))
    assert [client.get(url).status_code for url in urls] == [200, 200]


def test_a_thumbnail_is_served_to_whoever_may_see_the_batch(client: Client, uploader) -> None:
    from imports import services

    batch = make_batch(image_file("a.png", image_bytes()), user=uploader)
    import_file = batch.files.get()
    url = reverse("imports:thumbnail", args=[import_file.pk])
    assert client.get(url).status_code == 404  # not processed yet
    services.process_file(import_file.pk, import_file.task_id)
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    with Image.open(io.BytesIO(b"".join(response.streaming_content))) as thumbnail:
        assert max(thumbnail.size) == 256
    page = client.get(reverse("imports:batch", args=[batch.pk])).content.decode()
    assert url in page
    client.force_login(user_with(username="stranger"))
    assert client.get(url).status_code == 404


def test_the_batch_page_lists_rejected_rows(client: Client, uploader) -> None:
    from imports import services

    batch = make_batch(csv_file("p.csv", product_csv(20).content), user=uploader)
    import_file = batch.files.get()
    services.process_file(import_file.pk, import_file.task_id)
    body = client.get(reverse("imports:batch", args=[batch.pk])).content.decode()
    assert "2 rows rejected" in body
    assert "line 12: price: Enter a number." in body
    assert "line 22: stock: Ensure this value is greater than or equal to 0." in body


def test_a_failed_file_shows_its_error_on_the_page(client: Client, uploader) -> None:
    from imports import services

    batch = make_batch(
        csv_file("p.csv", b"sku,name,cost\n1,2,3\n"),
        image_file("x.jpg", corrupt_jpeg()),
        user=uploader,
    )
    for import_file in batch.files.all():
        services.process_file(import_file.pk, import_file.task_id)
    body = client.get(reverse("imports:batch", args=[batch.pk])).content.decode()
    assert "Wrong columns" in body
    assert "Missing: price, stock" in body
    assert "corrupt or truncated" in body
    assert "setTimeout(poll" not in body  # finished: the page stops polling


def upload_while_refused(client: Client, refusing_broker, **headers) -> tuple[ImportFile, object]:
    with refusing_broker():
        response = client.post(
            UPLOAD,
            {"files": [upload("products.csv", product_csv(3).content)]},
            follow=True,
            **headers,
        )
    return ImportFile.objects.select_related("batch").get(), response


@pytest.mark.django_db(transaction=True)
def test_an_upload_the_broker_refuses_waits_for_the_queue_with_a_warning(
    client: Client, uploader, refusing_broker
) -> None:
    import_file, response = upload_while_refused(client, refusing_broker)
    batch = import_file.batch
    assert response.redirect_chain == [(reverse("imports:batch", args=[batch.pk]), 302)]
    # Waiting, not failed: its message is in the outbox, with the broker's real refusal.
    assert import_file.status == ImportFile.Status.NOT_QUEUED
    assert batch.status == ImportBatch.Status.NOT_QUEUED
    assert import_file.error == ""
    message = OutboxMessage.objects.get(task_id=import_file.task_id)
    assert message.status == OutboxStatus.PENDING
    assert "Connection refused" in message.last_error
    # A warning, and no success message beside it.
    [shown] = response.context["messages"]
    assert shown.level_tag == "warning"
    assert str(shown) == (
        "1 file stored, but not queued for processing yet: the task queue is unavailable. "
        "It is queued automatically once the queue is back."
    )
    page = response.content.decode()
    assert "queued for processing." not in page
    assert '<td data-field="status" class="not_queued">waiting for the task queue</td>' in page
    assert "Connection refused" not in page
    assert client.get(reverse("imports:batch_status", args=[batch.pk])).json()["status"] == (
        "not_queued"
    )


@pytest.mark.django_db(transaction=True)
def test_a_waiting_file_is_queued_once_the_outbox_sends_it(
    client: Client, uploader, refusing_broker
) -> None:
    from myproject.celery import app

    import_file, _ = upload_while_refused(client, refusing_broker)
    assert import_file.status == ImportFile.Status.NOT_QUEUED
    try:
        # The broker is back and no worker takes the message yet: the file is queued, not
        # waiting for a queue that has it.
        assert outbox.sweep(older_than=0) == 1
        import_file.refresh_from_db()
        assert import_file.status == ImportFile.Status.QUEUED
        assert ImportBatch.objects.get().status == ImportBatch.Status.QUEUED
    finally:
        app.control.purge()


@pytest.mark.django_db(transaction=True)
def test_an_upload_the_broker_refuses_is_explained_in_chinese_without_the_brokers_english(
    client: Client, uploader, refusing_broker
) -> None:
    import_file, response = upload_while_refused(
        client, refusing_broker, HTTP_ACCEPT_LANGUAGE="zh-hans"
    )
    assert import_file.status == ImportFile.Status.NOT_QUEUED
    [shown] = response.context["messages"]
    assert str(shown) == (
        "已保存 1 个文件，但暂未加入处理队列：消息代理不可用。消息代理恢复后会自动加入。"
    )
    page = response.content.decode()
    assert '<td data-field="status" class="not_queued">等待消息代理</td>' in page
    assert "Connection refused" not in page
    assert "Error 111" not in page


@pytest.mark.django_db(transaction=True)
def test_when_the_broker_takes_some_files_both_messages_are_shown(client: Client, uploader) -> None:
    down = OSError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")
    calls = []

    def second_refused(*args, **kwargs):
        calls.append(args)
        if len(calls) > 1:
            raise down

    with mock.patch.object(process_import_file, "apply_async", side_effect=second_refused):
        response = client.post(
            UPLOAD,
            {"files": [upload(f"{n}.csv", product_csv(2).content) for n in "abc"]},
            follow=True,
        )
    assert [str(m) for m in response.context["messages"]] == [
        "1 file stored and queued for processing.",
        "2 files stored, but not queued for processing yet: the task queue is unavailable. "
        "They are queued automatically once the queue is back.",
    ]
    assert ImportBatch.objects.get().status == ImportBatch.Status.NOT_QUEUED
