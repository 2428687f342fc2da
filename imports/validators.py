"""What an upload must be: an allowed extension, a size under the limit, and content to match.

The extension alone proves nothing, so each file is also sniffed: an image must open and verify
with Pillow (restricted to the formats we thumbnail), a CSV must be UTF-8 text whose first row is
a header. The columns themselves are checked by the worker, which reports them per file.
"""

from __future__ import annotations

import codecs
import csv
import io
import warnings
from pathlib import PurePath

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _
from PIL import Image

from operations.text import listed

from .models import ImportFile

CSV_EXTENSIONS = frozenset({".csv"})
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp"})
# Pillow may only use these decoders: a file named .png that is really EPS (which would run
# Ghostscript) or another exotic format is refused instead of being parsed.
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "WEBP")
CSV_SNIFF_BYTES = 64 * 1024


class ImageBombError(ValueError):
    """More pixels than Pillow considers safe to decode."""


def accepted_extensions() -> list[str]:
    return sorted(CSV_EXTENSIONS | IMAGE_EXTENSIONS)


def kind_for_name(name: str) -> str | None:
    suffix = PurePath(name).suffix.lower()
    if suffix in CSV_EXTENSIONS:
        return ImportFile.Kind.CSV
    if suffix in IMAGE_EXTENSIONS:
        return ImportFile.Kind.IMAGE
    return None


def open_image(stream: io.BufferedIOBase | io.BytesIO) -> Image.Image:
    """Image.open limited to IMAGE_FORMATS, with decompression bombs raised as errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(stream, formats=IMAGE_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageBombError(str(exc)) from exc


def validate_upload(upload: UploadedFile) -> str:
    """Return the file's kind, or raise ValidationError saying why it is refused."""
    kind = kind_for_name(upload.name or "")
    if kind is None:
        raise ValidationError(
            _("its type is not accepted (accepted: %(extensions)s).")
            % {"extensions": listed(accepted_extensions())}
        )
    if not upload.size:
        raise ValidationError(_("it is empty."))
    limit = settings.IMPORTS_MAX_FILE_SIZE
    if upload.size > limit:
        raise ValidationError(
            _("it is %(size)s, over the limit of %(limit)s.")
            % {"size": filesizeformat(upload.size), "limit": filesizeformat(limit)}
        )
    try:
        if kind == ImportFile.Kind.CSV:
            _sniff_csv(upload)
        else:
            _sniff_image(upload)
    finally:
        upload.seek(0)
    return kind


def _sniff_csv(upload: UploadedFile) -> None:
    upload.seek(0)
    sample = upload.read(CSV_SNIFF_BYTES)
    # Incremental, so a multi-byte character cut by the end of the sample is not an error.
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    try:
        text = decoder.decode(sample, final=len(sample) >= upload.size)
    except UnicodeDecodeError as exc:
        raise ValidationError(_("it is not UTF-8 text, so it is not a CSV file.")) from exc
    if "\x00" in text:
        raise ValidationError(_("it contains binary data, so it is not a CSV file."))
    first_line = text.splitlines()[0] if text.strip() else ""
    try:
        header = next(csv.reader([first_line]), [])
    except csv.Error as exc:
        raise ValidationError(_("its first line is not a CSV header.")) from exc
    names = [name.strip() for name in header]
    if not names or not all(names):
        raise ValidationError(
            _("its first line must be a header of column names, with none empty.")
        )


def _sniff_image(upload: UploadedFile) -> None:
    upload.seek(0)
    try:
        with open_image(upload) as image:
            image.verify()
    except ImageBombError as exc:
        raise ValidationError(_("the image has too many pixels to process safely.")) from exc
    except Exception as exc:
        # Pillow reports bad data with many exception types (OSError, SyntaxError, struct
        # errors...): whatever it raises, this upload is not an image we can use.
        raise ValidationError(
            _("it is not a valid image (accepted formats: %(formats)s).")
            % {"formats": listed(IMAGE_FORMATS)}
        ) from exc
