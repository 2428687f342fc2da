"""Test data for imports: product CSV files with known line numbers, real images, users."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from imports.forms import AcceptedFile
from imports.models import ImportBatch, ImportFile
from imports.services import create_batch

HEADER = ["sku", "name", "price", "stock"]


@dataclass
class CsvFile:
    """A CSV built row by row, remembering the line on which each row starts."""

    header: list[str] = field(default_factory=lambda: list(HEADER))
    rows: list[list[str]] = field(default_factory=list)
    bad: dict[int, str] = field(default_factory=dict)  # first line -> expected reason fragment

    def __post_init__(self) -> None:
        self._text = io.StringIO()
        self._writer = csv.writer(self._text, lineterminator="\n")
        self._writer.writerow(self.header)
        self._next_line = 2

    def add(self, row: list[str], bad: str | None = None) -> int:
        """Append a row; `bad` is a fragment of the reason it must be rejected with."""
        line = self._next_line
        before = self._text.tell()
        self._writer.writerow(row)
        self._next_line += self._text.getvalue()[before:].count("\n")
        self.rows.append(row)
        if bad is not None:
            self.bad[line] = bad
        return line

    @property
    def content(self) -> bytes:
        return self._text.getvalue().encode()

    @property
    def good_count(self) -> int:
        return len(self.rows) - len(self.bad)

    def upload(self, name: str = "products.csv") -> SimpleUploadedFile:
        return SimpleUploadedFile(name, self.content, content_type="text/csv")


def product_csv(count: int, with_bad_rows: bool = True) -> CsvFile:
    """`count` rows of products; with_bad_rows mixes in one of each kind of mistake."""
    data = CsvFile()
    mistakes = {
        5: (["SKU-DUP", "Dup", "1.00", "1"], None),
        # A quoted field spanning two lines shifts every later row's line number by one.
        7: (["SKU-MULTI", "Two\nlines", "2.50", "3"], None),
        10: (["SKU-X10", "Bad price", "abc", "1"], "price"),
        20: (["SKU-X20", "Negative stock", "1.00", "-5"], "stock"),
        30: (["SKU-DUP", "Duplicate", "1.00", "1"], "already appears on line"),
        40: (["SKU-X40", "Missing field", "1.00"], "Expected 4 fields, found 3"),
        50: (["", "No sku", "1.00", "1"], "sku"),
        60: (["SKU-X60", "Three decimals", "1.999", "1"], "price"),
        70: (["SKU X70", "Space in sku", "1.00", "1"], "sku"),
    }
    for i in range(1, count + 1):
        if with_bad_rows and i in mistakes:
            row, reason = mistakes[i]
            data.add(row, reason)
        else:
            data.add([f"SKU-{i:06d}", f"Product {i}", f"{i % 1000}.{i % 100:02d}", str(i % 50)])
    return data


def image_bytes(
    size: tuple[int, int] = (800, 600), fmt: str = "PNG", mode: str = "RGB", color=(200, 30, 30)
) -> bytes:
    image = Image.new(mode, size, color)
    # A gradient, so the encoders have real data to compress.
    for x in range(0, size[0], 8):
        image.putpixel((x, x * size[1] // size[0]), (0, 0, 0) if mode == "RGB" else (0, 0, 0, 255))
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def corrupt_jpeg() -> bytes:
    """A JPEG cut in the middle of its pixel data: the header reads, the pixels do not."""
    data = image_bytes((640, 480), "JPEG")
    return data[: len(data) // 2]


def user_with(*permissions: str, username: str = "uploader") -> User:
    user = User.objects.create_user(username, password="x")
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return User.objects.get(pk=user.pk)  # a fresh instance: permissions are cached per object


def make_batch(*files: tuple[str, bytes, str], user: User | None = None) -> ImportBatch:
    """A batch stored as the upload page stores it (name, content, kind per file)."""
    return create_batch(
        user,
        [AcceptedFile(SimpleUploadedFile(name, content), kind) for name, content, kind in files],
        language="en",
    )


def csv_file(name: str, content: bytes) -> tuple[str, bytes, str]:
    return (name, content, ImportFile.Kind.CSV)


def image_file(name: str, content: bytes) -> tuple[str, bytes, str]:
    return (name, content, ImportFile.Kind.IMAGE)
