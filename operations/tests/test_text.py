"""Translated pieces joined the way each language writes them (operations.text)."""

from __future__ import annotations

from django.utils import translation

from operations.testing import with_ledger_tasks
from operations.text import listed, sentences


def test_sentences_take_a_space_in_english_and_none_after_a_chinese_full_stop() -> None:
    assert sentences("One.", "Two.") == "One. Two."
    assert sentences("一。", "二。") == "一。二。"
    assert sentences("Only.") == "Only."
    assert sentences() == ""


def test_lists_use_the_readers_separator() -> None:
    with translation.override("en"):
        assert listed(["sku", "name", "price"]) == "sku, name, price"
    with translation.override("zh-hans"):
        assert listed(("PNG", "JPEG")) == "PNG、JPEG"


def test_the_ledger_tasks_join_a_workers_own_include() -> None:
    # Celery keeps only the last --include: a second one would drop the first.
    assert with_ledger_tasks(("-E",)) == ["-E", "--include", "reliability.ledger"]
    assert with_ledger_tasks(("--include", "chaos.database")) == [
        "--include",
        "chaos.database,reliability.ledger",
    ]
    assert with_ledger_tasks(["-I=x"]) == ["-I=x,reliability.ledger"]


def test_written_in_a_stored_language_or_the_sites() -> None:
    from django.utils.translation import get_language

    from operations.text import written_in

    with written_in("zh-hans"):
        assert get_language() == "zh-hans"
    with translation.override("zh-hans"), written_in(""):
        assert get_language() == "en"  # the site's (settings.LANGUAGE_CODE)
