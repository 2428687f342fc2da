"""Joining translated pieces into one text, the way the reader's language writes it."""

from __future__ import annotations

from collections.abc import Iterable

from django.utils.translation import pgettext


def sentences(*texts: str) -> str:
    """Sentences one after another: a space between English ones, none after a Chinese "。"."""
    out = ""
    for text in texts:
        if out and not out.endswith(("。", "！", "？", "；")):
            out += " "
        out += text
    return out


def listed(items: Iterable[str]) -> str:
    """Items in a sentence, with the reader's separator ("a, b" in English, "a、b" in Chinese)."""
    return pgettext("between the items of a list", ", ").join(items)
