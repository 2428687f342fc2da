from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import PageServer


@pytest.fixture(scope="module")
def page_server() -> Iterator[PageServer]:
    """A local HTTP server on a free port, for the tests of one module."""
    server = PageServer().start()
    yield server
    server.stop()
