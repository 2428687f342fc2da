"""pydantic's validation messages in the user's language.

pydantic writes its messages in English only, and the console shows them beside translated
labels. The ones a launch form's arguments can give (int, float, str, bool, list, dict,
Literal and Enum, date, time, datetime and timedelta, Decimal, UUID, nested models, and the
constraints of Field) are translated here by pydantic's error type (pydantic_core's ErrorType);
their msgids are pydantic's own English wording (its plural where it has "item{expected_plural}";
without the parts pydantic fills in with English words, such as a date parser's reason), and
in English pydantic's message is shown as it is. A type not listed here, in any language,
keeps pydantic's message. A value of the wrong JSON type (validation is strict) is told which
type it is: "Input should be a valid integer, not true or false".
"""

from __future__ import annotations

import functools
from typing import Any

from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _
from pydantic import BaseModel, ConfigDict, ValidationError

MESSAGES: dict[str, Any] = {
    "missing": _("Field required"),
    "int_type": _("Input should be a valid integer"),
    "int_parsing": _("Input should be a valid integer, unable to parse string as an integer"),
    "int_from_float": _("Input should be a valid integer, got a number with a fractional part"),
    "float_type": _("Input should be a valid number"),
    "float_parsing": _("Input should be a valid number, unable to parse string as a number"),
    "bool_type": _("Input should be a valid boolean"),
    "bool_parsing": _("Input should be a valid boolean, unable to interpret input"),
    "string_type": _("Input should be a valid string"),
    "string_too_short": _("String should have at least %(min_length)s characters"),
    "string_too_long": _("String should have at most %(max_length)s characters"),
    "greater_than": _("Input should be greater than %(gt)s"),
    "greater_than_equal": _("Input should be greater than or equal to %(ge)s"),
    "less_than": _("Input should be less than %(lt)s"),
    "less_than_equal": _("Input should be less than or equal to %(le)s"),
    "literal_error": _("Input should be one of %(expected)s"),
    "list_type": _("Input should be a valid list"),
    "dict_type": _("Input should be a valid dictionary"),
    "extra_forbidden": _("Extra inputs are not permitted"),
    # A field validator's ValueError (or assert): its own text, already in the user's language
    # when it was made with gettext, without pydantic's "Value error, " in front.
    "value_error": "%(error)s",
    "assertion_error": "%(error)s",
    # Numbers: an int given 1e300 or a thousand digits, NaN or infinity; Field(multiple_of=).
    "int_parsing_size": _("Unable to parse input string as an integer, exceeded maximum size"),
    "finite_number": _("Input should be a finite number"),
    "multiple_of": _("Input should be a multiple of %(multiple_of)s"),
    # Strings: Field(pattern=).
    "string_pattern_mismatch": _("String should match pattern '%(pattern)s'"),
    # An Enum's choices are said as a Literal's are.
    "enum": _("Input should be one of %(expected)s"),
    # Lists and dictionaries with Field(min_length=, max_length=), and nested models.
    # pydantic says "List" or "Dictionary" (field_type) in English: left out.
    "too_short": _("Should have at least %(min_length)s items, not %(actual_length)s"),
    "too_long": _("Should have at most %(max_length)s items"),
    "model_type": _("Input should be a valid dictionary"),
    # Dates, times, datetimes and durations (PastDate, FutureDatetime, AwareDatetime...). The
    # parser's own reason after the comma (its ctx "error") is English: left out.
    "date_type": _("Input should be a valid date"),
    "date_parsing": _("Input should be a valid date in the format YYYY-MM-DD"),
    "date_from_datetime_parsing": _("Input should be a valid date or datetime"),
    "date_from_datetime_inexact": _(
        "Datetimes provided to dates should have zero time - e.g. be exact dates"
    ),
    "date_past": _("Date should be in the past"),
    "date_future": _("Date should be in the future"),
    "datetime_type": _("Input should be a valid datetime"),
    "datetime_parsing": _("Input should be a valid datetime"),
    "datetime_from_date_parsing": _("Input should be a valid datetime or date"),
    "datetime_past": _("Input should be in the past"),
    "datetime_future": _("Input should be in the future"),
    "timezone_naive": _("Input should not have timezone info"),
    "timezone_aware": _("Input should have timezone info"),
    "time_type": _("Input should be a valid time"),
    "time_parsing": _("Input should be in a valid time format"),
    "time_delta_type": _("Input should be a valid timedelta"),
    "time_delta_parsing": _("Input should be a valid timedelta"),
    # Decimal, with Field(max_digits=, decimal_places=).
    "decimal_type": _("Decimal input should be an integer, float, string or Decimal object"),
    "decimal_parsing": _("Input should be a valid decimal"),
    "decimal_max_digits": _(
        "Decimal input should have no more than %(max_digits)s digits in total"
    ),
    "decimal_max_places": _(
        "Decimal input should have no more than %(decimal_places)s decimal places"
    ),
    "decimal_whole_digits": _(
        "Decimal input should have no more than %(whole_digits)s digits before the decimal point"
    ),
    # UUID, UUID4...
    "uuid_type": _("UUID input should be a string, bytes or UUID object"),
    "uuid_parsing": _("Input should be a valid UUID"),
    "uuid_version": _("UUID version %(expected_version)s expected"),
}


#: The errors of a value of another JSON type (strict validation): their message says which
#: type was sent, as "true" for a number or "1" for true are not read as what they look like.
TYPE_ERRORS = {"int_type", "float_type", "bool_type", "string_type"}


def _given(value: Any) -> Any:
    """What a JSON value is, in words, for "…, not a string"."""
    if isinstance(value, bool):
        return _("true or false")
    if isinstance(value, str):
        return _("a string")
    if isinstance(value, float):
        return _("a number with a decimal point or an exponent")
    if isinstance(value, int):
        return _("a whole number")
    if isinstance(value, list):
        return _("an array")
    if isinstance(value, dict):
        return _("an object")
    if value is None:
        return _("null")
    return None


@functools.cache
def closed(schema: type[BaseModel]) -> type[BaseModel]:
    """The schema, refusing any name it does not read (pydantic ignores them by default).

    pydantic itself decides what it reads (aliases, names), so the refusal follows it; a
    schema that allows extra names keeps them.
    """
    if schema.model_config.get("extra") == "allow":
        return schema
    return type(
        schema.__name__,
        (schema,),
        {"model_config": ConfigDict(extra="forbid"), "__module__": schema.__module__},
    )


def message(error: dict[str, Any]) -> str:
    """One pydantic error's message, in the active language, with the type sent if it was
    the wrong one."""
    text = _message(error)
    given = _given(error.get("input")) if error.get("type") in TYPE_ERRORS else None
    if given is None:
        return text
    return str(_("%(message)s, not %(given)s") % {"message": text, "given": given})


def _message(error: dict[str, Any]) -> str:
    template = MESSAGES.get(error.get("type", ""))
    if template is None or (get_language() or "en").lower().startswith("en"):
        return str(error.get("msg", ""))
    context = {key: str(value) for key, value in (error.get("ctx") or {}).items()}
    if "expected" in context:
        # pydantic joins the choices with an English "or": 'a', 'b' or 'c'. Only that last
        # "or" goes (a choice may hold an " or " of its own).
        expected = context["expected"]
        joint = "' or '" if "' or '" in expected else " or "
        head, found, tail = expected.rpartition(joint)
        if found:
            context["expected"] = f"{head}{joint.replace(' or ', ', ')}{tail}"
    try:
        text = str(template) % context
    except (KeyError, TypeError, ValueError):
        return str(error.get("msg", ""))
    # A bare `assert` in a validator has no text of its own.
    return text if text.strip() else str(_("The value is not valid."))


def errors_by_field(exc: ValidationError) -> dict[str, list[str]]:
    """The errors of a validation, by dotted field name (`__all__` for the whole object)."""
    errors: dict[str, list[str]] = {}
    for error in exc.errors():
        key = ".".join(str(part) for part in error.get("loc", ())) or "__all__"
        errors.setdefault(key, []).append(message(error))
    return errors
