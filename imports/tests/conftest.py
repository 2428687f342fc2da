from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def media_dir(tmp_path: Path) -> Path:
    """Where uploads go; integration modules override it with one their worker shares."""
    return tmp_path / "media"


@pytest.fixture(autouse=True)
def media(settings, media_dir: Path) -> Path:
    """Every imports test stores files in a temporary MEDIA_ROOT, never the project's."""
    settings.MEDIA_ROOT = str(media_dir)
    return media_dir
