"""Whole-word abbreviation expansion: pure functions over strings, no database."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

# Chinese and Japanese are written without spaces, so each ideograph or kana counts as a word
# of its own, as in Unicode's word-break rules (UAX #29): in "使用DB存储" the "DB" is a word.
_SPACELESS_SCRIPTS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# A letter, digit or underscore that is not one of those: the characters that continue a word.
_WORD_CHAR = rf"[^\W{_SPACELESS_SCRIPTS}]"


def whole_word_pattern(short_forms: Iterable[str]) -> re.Pattern[str] | None:
    """A pattern matching any of the short forms where it stands as a whole word.

    Case-sensitive: "DB" is not "db". None when there is nothing to match.
    """
    # Longest first, so "C++" wins over "C" where both would fit.
    forms = sorted({form for form in short_forms if form}, key=lambda form: (-len(form), form))
    if not forms:
        return None
    alternatives = "|".join(re.escape(form) for form in forms)
    return re.compile(rf"(?<!{_WORD_CHAR})(?:{alternatives})(?!{_WORD_CHAR})")


def expand(text: str, expansions: Mapping[str, str]) -> tuple[str, int]:
    """Replace each abbreviation standing as a whole word; return the text and the count.

    One pass: an expansion is never itself searched for abbreviations.
    """
    pattern = whole_word_pattern(expansions)
    if pattern is None:
        return text, 0
    # A function, not a replacement string, so a backslash in an expansion stays literal.
    return pattern.subn(lambda match: expansions[match.group(0)], text)


def whole_words_in(text: str, short_forms: Iterable[str]) -> list[str]:
    """The short forms that occur in text as whole words, in order of first appearance."""
    pattern = whole_word_pattern(short_forms)
    if pattern is None:
        return []
    return list(dict.fromkeys(match.group(0) for match in pattern.finditer(text)))
