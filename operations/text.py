"""Text in the right language: joined the way that language writes, or written in a stored one."""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.utils import translation
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


def written_in(language: str | None) -> translation.override:
    """Write in `language`, the one a row keeps of the person who asked for the work (the
    worker's own is the site's); in the site's language when the row has none."""
    return translation.override(language or settings.LANGUAGE_CODE)
