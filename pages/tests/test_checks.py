from __future__ import annotations

from pages.checks import check_limits, check_private_addresses


def test_good_settings_pass() -> None:
    assert check_limits() == []
    assert check_private_addresses() == []


def test_bad_limits_are_reported(settings) -> None:
    settings.PAGES_MAX_BYTES = 0
    settings.PAGES_READ_TIMEOUT = -1
    settings.PAGES_MAX_REDIRECTS = -2
    assert sorted(e.id for e in check_limits()) == ["pages.E001", "pages.E001", "pages.E002"]


def test_reaching_the_internal_network_is_a_deploy_warning(settings) -> None:
    settings.PAGES_ALLOW_PRIVATE_ADDRESSES = True
    [warning] = check_private_addresses()
    assert warning.id == "pages.W001"
