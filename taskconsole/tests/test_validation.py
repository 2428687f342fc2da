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
            raise ValueError("keep at least one")
        return value


def _errors(data: dict) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as raised:
        Job.model_validate(data)
    return errors_by_field(raised.value)


def test_english_keeps_pydantics_messages() -> None:
    with translation.override("en"):
        assert _errors({"job": "drop", "keep": 0}) == {
            "job": ["Input should be 'backup' or 'prune'"],
            "keep": ["Value error, keep at least one"],
        }


def test_chinese_gets_them_translated() -> None:
    with translation.override("zh-hans"):
        errors = _errors({"job": "drop", "keep": 0})
    # The choices without pydantic's English "or"; a validator's own (translated) text without
    # pydantic's "Value error, " in front.
    assert errors["job"] == ["应为以下之一：'backup', 'prune'"]
    assert errors["keep"] == ["keep at least one"]


def test_a_json_field_nested_past_reason_is_an_error_not_a_crash() -> None:
    from django.http import QueryDict

    from taskconsole import forms

    schema = {"properties": {"items": {"type": "array", "title": "Items"}}, "required": []}
    post = QueryDict(mutable=True)
    post["items"] = "[" * 5000 + "]" * 5000
    arguments, errors = forms.arguments_from_post(schema, post)
    assert "items" in errors
    assert "items" not in arguments


def _refused(schema: type[BaseModel], given: dict) -> list[str]:
    from taskconsole.validation import closed

    with pytest.raises(ValidationError) as raised:
        closed(schema).model_validate(given)
    return sorted(key for key, _ in errors_by_field(raised.value).items())


def test_unknown_argument_names_know_the_schemas_aliases() -> None:
    from pydantic import AliasChoices, AliasPath, ConfigDict, Field

    class Aliased(BaseModel):
        x: int = Field(alias="ex")
        y: int = Field(validation_alias=AliasChoices("why", AliasPath("wrap", 0)))

    class ByName(Aliased):
        model_config = ConfigDict(populate_by_name=True)

    class Renamed(BaseModel):
        # pydantic reads only the validation alias when both are given.
        x: int = Field(alias="ex", validation_alias="eks")

    assert _refused(Renamed, {"ex": 1, "eks": 2}) == ["ex"]
    # Without populate_by_name pydantic would drop x and y, and of two choices it reads the
    # first given (why), dropping wrap: all refused, not ignored.
    given = {"ex": 1, "x": 2, "why": 3, "wrap": [4], "y": 5, "zed": 6}
    assert _refused(Aliased, given) == ["wrap", "x", "y", "zed"]
    assert _refused(ByName, {"x": 2, "y": 5, "zed": 6}) == ["zed"]
