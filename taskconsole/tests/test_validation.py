"""pydantic's messages in the user's language, pydantic's own wording in English."""

from __future__ import annotations

from typing import Literal

import pytest
from django.utils import translation
from pydantic import BaseModel, ValidationError, field_validator

from taskconsole.validation import errors_by_field


class Job(BaseModel):
    job: Literal["backup", "prune"]
    keep: int = 1

    @field_validator("keep")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError(translation.gettext("Enter a whole number."))
        return value


def _errors(data: dict) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as raised:
        Job.model_validate(data)
    return errors_by_field(raised.value)


def test_english_keeps_pydantics_messages() -> None:
    with translation.override("en"):
        assert _errors({"job": "drop", "keep": 0}) == {
            "job": ["Input should be 'backup' or 'prune'"],
            "keep": ["Value error, Enter a whole number."],
        }


def test_chinese_gets_them_translated() -> None:
    with translation.override("zh-hans"):
        errors = _errors({"job": "drop", "keep": 0})
    # The choices without pydantic's English "or"; a validator's own (translated) text without
    # pydantic's "Value error, " in front.
    assert errors["job"] == ["应为以下之一：'backup', 'prune'"]
    assert errors["keep"][0] != "Value error, Enter a whole number."
    assert not errors["keep"][0].startswith("Value error")
