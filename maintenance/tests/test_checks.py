from __future__ import annotations

from django.db import connections
from django.test import override_settings

from maintenance import checks


def ids() -> list[str]:
    return [message.id for message in checks.check_backups()]


def test_a_sound_configuration_passes() -> None:
    assert ids() == []


def test_missing_postgresql_client_tools_are_reported(monkeypatch) -> None:
    monkeypatch.setattr(connections["default"], "vendor", "postgresql")
    monkeypatch.setattr(checks.shutil, "which", lambda name: None)
    assert ids() == ["maintenance.W001", "maintenance.W001"]


def test_an_unsupported_database_is_reported(monkeypatch) -> None:
    monkeypatch.setattr(connections["default"], "vendor", "mysql")
    assert ids() == ["maintenance.W002"]


@override_settings(BACKUP_KEEP=0)
def test_keeping_no_backups_is_reported() -> None:
    assert ids() == ["maintenance.W003"]
