from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from notifications import forms
from notifications.forms import ComposeForm, parse_recipients


def messages_of(error: ValidationError) -> list[str]:
    return [str(message) for message in error.messages]


def test_one_address_per_line_blank_lines_and_spaces_ignored() -> None:
    text = "  a@example.com \n\n\tb@Example.COM\r\nc@example.com\n"
    assert parse_recipients(text) == ["a@example.com", "b@example.com", "c@example.com"]


def test_duplicates_are_dropped_ignoring_case_first_spelling_kept() -> None:
    text = "Ann@example.com\nann@EXAMPLE.com\nbob@example.com\nANN@example.com"
    assert parse_recipients(text) == ["Ann@example.com", "bob@example.com"]


def test_every_bad_line_is_reported_with_its_number() -> None:
    text = "good@example.com\nnot-an-address\n\nx@\ngood2@example.com\na@b.com, c@d.com"
    with pytest.raises(ValidationError) as caught:
        parse_recipients(text)
    assert messages_of(caught.value) == [
        "Line 2: “not-an-address” is not a valid email address.",
        "Line 4: “x@” is not a valid email address.",
        "Line 6: “a@b.com, c@d.com” is not a valid email address.",
    ]


def test_too_long_address_is_refused() -> None:
    address = "a" * 64 + "@" + ".".join(["b" * 63] * 3) + ".com"
    assert len(address) > 254
    with pytest.raises(ValidationError) as caught:
        parse_recipients(address)
    assert messages_of(caught.value)[0].startswith("Line 1: ")


def test_past_twenty_bad_lines_the_rest_are_counted() -> None:
    text = "\n".join(f"bad{i}" for i in range(25))
    with pytest.raises(ValidationError) as caught:
        parse_recipients(text)
    reported = messages_of(caught.value)
    assert len(reported) == 21
    assert reported[-1] == "… and 5 more invalid lines."


def test_only_blank_lines_is_an_error() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_recipients("\n  \n")
    assert messages_of(caught.value) == ["Enter at least one email address."]


def test_too_many_recipients_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forms, "MAX_RECIPIENTS", 2)
    with pytest.raises(ValidationError) as caught:
        parse_recipients("a@example.com\nb@example.com\nc@example.com")
    assert messages_of(caught.value) == ["At most 2 recipients at a time; this list has 3."]


def test_compose_form_cleans_recipients_to_a_list() -> None:
    form = ComposeForm({"subject": "Hi", "body": "Text", "recipients": "a@example.com\n"})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["recipients"] == ["a@example.com"]


def test_compose_form_refuses_a_subject_with_a_line_break() -> None:
    form = ComposeForm(
        {"subject": "Hi\nBcc: x@evil.example", "body": "Text", "recipients": "a@example.com"}
    )
    assert not form.is_valid()
    assert form.errors["subject"] == ["The subject must fit on one line."]


def test_compose_form_requires_recipients() -> None:
    form = ComposeForm({"subject": "Hi", "body": "Text", "recipients": ""})
    assert not form.is_valid()
    assert form.errors["recipients"] == ["This field is required."]
