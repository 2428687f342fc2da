from __future__ import annotations

import pytest

from articles.text import expand, whole_words_in

MYCORP = {"MyCorp": "My Corporation"}


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("MyCorp ships.", "My Corporation ships."),
        ("(MyCorp), MyCorp.", "(My Corporation), My Corporation."),
        ("Ask MyCorp's team", "Ask My Corporation's team"),
        ("使用MyCorp的产品", "使用My Corporation的产品"),
    ],
)
def test_expands_the_abbreviation_where_it_is_a_whole_word(before: str, after: str) -> None:
    assert expand(before, MYCORP)[0] == after


@pytest.mark.parametrize(
    "unchanged",
    ["MyCorporation", "NotMyCorp", "MyCorp2", "MyCorp_old", "mycorp", "MYCORP", "ÜberMyCorp"],
)
def test_leaves_parts_of_other_words_and_other_cases_alone(unchanged: str) -> None:
    assert expand(unchanged, MYCORP) == (unchanged, 0)


def test_counts_the_replacements() -> None:
    assert expand("MyCorp and MyCorp", MYCORP) == ("My Corporation and My Corporation", 2)


def test_the_longest_abbreviation_wins() -> None:
    text, count = expand("C++ and C", {"C": "the C language", "C++": "the C++ language"})
    assert text == "the C++ language and the C language"
    assert count == 2


def test_one_pass_and_expansions_are_literal() -> None:
    expansions = {"A": "B", "B": "c", "RE": r"\1 \g<0>"}
    assert expand("A B RE", expansions) == (r"B c \1 \g<0>", 3)


def test_no_abbreviations_no_change() -> None:
    assert expand("MyCorp", {}) == ("MyCorp", 0)
    assert whole_words_in("MyCorp", []) == []


def test_whole_words_in_lists_each_found_once_in_order() -> None:
    assert whole_words_in("DB, API and DB; DBA", ["API", "DB", "SQL"]) == ["DB", "API"]
