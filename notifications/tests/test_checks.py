from __future__ import annotations

from notifications.checks import check_settings


def test_settings_as_shipped_pass() -> None:
    assert check_settings() == []


def test_a_bad_batch_size_and_countdown_are_reported(settings) -> None:
    settings.NOTIFICATIONS_BATCH_SIZE = 0
    settings.NOTIFICATIONS_RETRY_COUNTDOWN = -1
    assert [error.id for error in check_settings()] == ["notifications.E001", "notifications.E002"]
