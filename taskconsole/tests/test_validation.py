"""pydantic's messages in the user's language, pydantic's own wording in English."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Literal
from uuid import UUID

import pytest
from django.utils import translation
from pydantic import (
    UUID4,
    AwareDatetime,
    BaseModel,
    Field,
    FutureDate,
    NaiveDatetime,
    PastDate,
    PastDatetime,
    ValidationError,
    field_validator,
)

from taskconsole.validation import errors_by_field


class Color(Enum):
    RED = "red"
    GREEN = "green"


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


class Everything(BaseModel):
    """One argument of each type a launch form takes, with the constraints of Field."""

    count: int = 0
    even: int = Field(0, multiple_of=2)
    ratio: float = Field(0, allow_inf_nan=False)
    code: str = Field("a", pattern="^[a-z]+$")
    flag: bool = False
    items: list[int] = Field([], min_length=1, max_length=2)
    table: dict[str, int] = Field({}, max_length=1)
    color: Color = Color.RED
    day: date = date(2000, 1, 1)
    before: PastDate = date(2000, 1, 1)
    after: FutureDate = date(2999, 1, 1)
    at: datetime = datetime(2000, 1, 1)
    aware: AwareDatetime = datetime(2000, 1, 1, tzinfo=UTC)
    naive: NaiveDatetime = datetime(2000, 1, 1)
    then: PastDatetime = datetime(2000, 1, 1)
    when: time = time(0)
    wait: timedelta = timedelta(0)
    amount: Decimal = Field(Decimal(0), max_digits=4, decimal_places=2)
    ref: UUID = UUID(int=0)
    ref4: UUID4 = UUID("12345678-1234-4234-8234-123456789012")
    nested: Job = Job(job="backup")


#: Each error type pydantic gives for these arguments, and a value that gives it.
GIVES = {
    "int_parsing_size": {"count": 1e300},
    "finite_number": {"count": float("nan")},
    "multiple_of": {"even": 3},
    "string_pattern_mismatch": {"code": "A"},
    "too_short": {"items": []},
    "too_long": {"table": {"a": 1, "b": 2}},
    "enum": {"color": "purple"},
    "model_type": {"nested": 5},
    "date_type": {"day": [1]},
    "date_from_datetime_parsing": {"day": "2024-13-01"},
    "date_from_datetime_inexact": {"day": "2024-01-01T10:00:00"},
    "date_past": {"before": "2999-01-01"},
    "date_future": {"after": "2000-01-01"},
    "datetime_type": {"at": [1]},
    "datetime_parsing": {"at": 1e20},
    "datetime_from_date_parsing": {"at": "yesterday"},
    "timezone_aware": {"aware": "2024-01-01T00:00"},
    "timezone_naive": {"naive": "2024-01-01T00:00Z"},
    "datetime_past": {"then": "2999-01-01T00:00"},
    "time_type": {"when": [1]},
    "time_parsing": {"when": "noon"},
    "time_delta_type": {"wait": [1]},
    "time_delta_parsing": {"wait": "a while"},
    "decimal_type": {"amount": [1]},
    "decimal_parsing": {"amount": "much"},
    "decimal_max_digits": {"amount": "12345"},
    "decimal_max_places": {"amount": "1.234"},
    "decimal_whole_digits": {"amount": "123.4"},
    "uuid_type": {"ref": 5},
    "uuid_parsing": {"ref": "not-a-uuid"},
    "uuid_version": {"ref4": "12345678-1234-1234-8234-123456789012"},
}


@pytest.mark.parametrize(("error_type", "given"), GIVES.items(), ids=list(GIVES))
def test_every_error_a_launch_form_can_give_is_translated(error_type, given) -> None:
    from taskconsole.validation import message

    with pytest.raises(ValidationError) as raised:
        Everything.model_validate(given)
    [error] = raised.value.errors()
    assert error["type"] == error_type
    with translation.override("en"):
        assert message(error) == error["msg"]  # pydantic's own
    with translation.override("zh-hans"):
        text = message(error)
    # Chinese, with pydantic's numbers in it but none of its English words.
    assert re.search(r"[\u4e00-\u9fff]", text), text
    assert not re.search(r"\b(should|Input|List|Dictionary|expected|after)\b", text), text


def test_the_audits_examples_in_chinese() -> None:
    class Crunch(BaseModel):
        n: int

    cases = {
        '{"n": 1e300}': "应为整数：数值过大，无法解析",
        '{"n": "' + "9" * 5000 + '"}': "应为整数：数值过大，无法解析",
        '{"n": NaN}': "应为有限的数（不能是 NaN 或无穷大）",
    }
    for body, expected in cases.items():
        with pytest.raises(ValidationError) as raised:
            Crunch.model_validate(json.loads(body))  # as the launch API reads its body
        with translation.override("zh-hans"):
            assert errors_by_field(raised.value) == {"n": [expected]}
    with pytest.raises(ValidationError) as raised:
        Everything.model_validate({"items": [], "amount": "1.234"})
    with translation.override("zh-hans"):
        assert errors_by_field(raised.value) == {
            "items": ["至少应有 1 项，实际为 0 项"],
            "amount": ["最多只能有 2 位小数"],
        }


def test_a_bare_assert_and_a_choice_holding_or_read_well_in_chinese() -> None:
    from django.utils import translation

    from taskconsole.validation import message

    with translation.override("zh-hans"):
        bare = message(
            {"type": "assertion_error", "ctx": {"error": ""}, "msg": "Assertion failed, "}
        )
        choices = message(
            {"type": "literal_error", "ctx": {"expected": "'a or b', 'c' or 'd'"}, "msg": ""}
        )
    assert bare == "值无效。"
    assert choices.endswith("'a or b', 'c', 'd'")
