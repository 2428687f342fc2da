"""Translated pieces joined the way each language writes them (operations.text)."""

from __future__ import annotations

from django.utils import translation

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
