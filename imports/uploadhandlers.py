from __future__ import annotations

from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import HttpRequest


class SizeLimitUploadHandler(FileUploadHandler):
    """Drop any file that grows past max_size while it is received, and remember its name.

    Without it Django would write a file of any size to a temporary file before the form could
    refuse it. Placed first, it stops the following handlers from storing the rest; the form
    still checks each file's size, this only saves the disk.
    """

    def __init__(self, request: HttpRequest, max_size: int) -> None:
        super().__init__(request)
        self.max_size = max_size
        self.too_large: list[str] = []
        self._received = 0

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self._received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self._received += len(raw_data)
        if self._received > self.max_size:
            self.too_large.append(self.file_name or "")
            raise SkipFile()
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None
