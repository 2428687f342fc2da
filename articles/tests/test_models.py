from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from articles.models import Abbreviation

from .factories import make_abbreviation

pytestmark = pytest.mark.django_db


def test_a_plain_abbreviation_is_valid() -> None:
    make_abbreviation("DB", "database")
    Abbreviation(short_form="API", expansion="application programming interface").full_clean()


def test_an_expansion_containing_its_own_short_form_is_refused() -> None:
    with pytest.raises(ValidationError) as excinfo:
        Abbreviation(short_form="DB", expansion="DB (database)").full_clean()
    assert excinfo.value.error_dict["expansion"][0].code == "contains_abbreviation"
    assert "expanded again" in excinfo.value.message_dict["expansion"][0]


def test_an_expansion_containing_another_short_form_is_refused() -> None:
    make_abbreviation("DB", "database")
    with pytest.raises(ValidationError) as excinfo:
        Abbreviation(short_form="RDBMS", expansion="relational DB system").full_clean()
    assert '"DB"' in excinfo.value.message_dict["expansion"][0]


def test_a_short_form_found_in_another_expansion_is_refused() -> None:
    make_abbreviation("RDBMS", "relational DB system")
    with pytest.raises(ValidationError) as excinfo:
        Abbreviation(short_form="DB", expansion="database").full_clean()
    assert excinfo.value.error_dict["short_form"][0].code == "in_other_expansion"


def test_part_of_a_word_is_not_an_occurrence() -> None:
    make_abbreviation("DB", "database")
    Abbreviation(short_form="DBA", expansion="DBaaS administrator").full_clean()


def test_editing_an_abbreviation_does_not_compare_it_with_itself() -> None:
    abbreviation = make_abbreviation("DB", "database")
    abbreviation.expansion = "a database"
    abbreviation.full_clean()
