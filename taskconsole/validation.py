"""pydantic's validation messages in the user's language.

pydantic writes its messages in English only, and the console shows them beside translated
labels. The common ones are translated here by pydantic's error type; their msgids are
pydantic's own English wording, and in English pydantic's message is shown as it is. A type
not listed here, in any language, keeps pydantic's message.
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
    # A field validator's ValueError: its own text, already in the user's language when it was
    # made with gettext, without pydantic's "Value error, " in front.
    "value_error": "%(error)s",
}


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
    """One pydantic error's message, in the active language."""
    template = MESSAGES.get(error.get("type", ""))
    if template is None or (get_language() or "en").lower().startswith("en"):
        return str(error.get("msg", ""))
    context = {key: str(value) for key, value in (error.get("ctx") or {}).items()}
    if "expected" in context:
        # pydantic joins the choices with an English "or": 'a', 'b' or 'c'.
        context["expected"] = context["expected"].replace(" or ", ", ")
    try:
        return str(template) % context
    except (KeyError, TypeError, ValueError):
        return str(error.get("msg", ""))


def errors_by_field(exc: ValidationError) -> dict[str, list[str]]:
    """The errors of a validation, by dotted field name (`__all__` for the whole object)."""
    errors: dict[str, list[str]] = {}
    for error in exc.errors():
        key = ".".join(str(part) for part in error.get("loc", ())) or "__all__"
        errors.setdefault(key, []).append(message(error))
    return errors
