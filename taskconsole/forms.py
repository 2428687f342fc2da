"""HTML form fields generated from a launchable's pydantic JSON schema."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext as _


@dataclass(frozen=True)
class SchemaField:
    name: str
    label: str
    help_text: str
    widget: str  # number, text, checkbox, select, json
    required: bool
    value: Any
    step: str = ""
    minimum: Any = None
    maximum: Any = None
    choices: tuple[Any, ...] = ()
    errors: tuple[str, ...] = ()
    #: The JSON type the schema asks ("integer", "number", "boolean"...), and whether it also
    #: takes a string (a Decimal does, and keeps every digit typed that way).
    kind: str = ""
    takes_text: bool = False


#: What the form's text may say for an integer (no "_", spaces, point or exponent) and a number.
INTEGER = re.compile(r"[+-]?[0-9]+")
NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
#: What a checkbox sends when it is ticked (the template's: its default, "on"); unticked, nothing.
CHECKED = {"on", "true", "1"}
#: Python reads no integer of more digits.
MAX_DIGITS = 4300


def _resolve(schema: dict[str, Any], prop: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        return {
            **schema.get("$defs", {}).get(name, {}),
            **{k: v for k, v in prop.items() if k != "$ref"},
        }
    for key in ("anyOf", "allOf"):
        if key in prop:
            options = [p for p in prop[key] if p.get("type") != "null"]
            if options:
                return {
                    **_resolve(schema, options[0]),
                    **{k: v for k, v in prop.items() if k != key},
                }
    return prop


def _takes_text(schema: dict[str, Any], prop: dict[str, Any]) -> bool:
    options = prop.get("anyOf") or prop.get("oneOf") or [prop]
    return any(_resolve(schema, option).get("type") == "string" for option in options)


def schema_fields(
    schema: dict[str, Any], values: dict[str, Any] | None = None, errors: dict | None = None
) -> list[SchemaField]:
    values = values or {}
    errors = errors or {}
    required = set(schema.get("required", []))
    fields = []
    for name, raw in schema.get("properties", {}).items():
        prop = _resolve(schema, raw)
        kind = prop.get("type")
        if "enum" in prop:
            widget = "select"
        elif kind in {"integer", "number"}:
            widget = "number"
        elif kind == "boolean":
            widget = "checkbox"
        elif kind in {"array", "object"}:
            widget = "json"
        else:
            widget = "text"
        value = values.get(name, prop.get("default", ""))
        if widget == "json" and not isinstance(value, str):
            value = json.dumps(value)
        fields.append(
            SchemaField(
                name=name,
                label=prop.get("title") or name,
                help_text=prop.get("description", ""),
                widget=widget,
                required=name in required,
                value=value,
                step="1" if kind == "integer" else "any",
                minimum=prop.get("minimum", prop.get("exclusiveMinimum")),
                maximum=prop.get("maximum", prop.get("exclusiveMaximum")),
                choices=tuple(prop.get("enum", ())),
                errors=tuple(errors.get(name, ())),
                kind=kind or "",
                takes_text=_takes_text(schema, raw),
            )
        )
    return fields


def arguments_from_post(
    schema: dict[str, Any], post
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The arguments typed into the form as JSON values, and the errors of those that are not.

    The launch validates strictly, as the API does, so what was typed is read here, by the
    field's type: an integer is digits with an optional sign ("2", not "1_000", " 2 " or
    "1.0"), a number as HTML's number field writes one, a checkbox ticked or not, a choice one
    of the list (with its own type), a JSON field as JSON; any other text is a string.
    """
    arguments: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for field in schema_fields(schema):
        raw = post.get(field.name)
        if field.widget == "checkbox":
            if raw is not None and raw not in CHECKED:
                errors[field.name] = [_("A checkbox is ticked or not: it cannot send this value.")]
            arguments[field.name] = raw is not None
        elif raw in (None, ""):
            continue
        elif field.widget == "json":
            try:
                arguments[field.name] = json.loads(raw)
            except (ValueError, RecursionError):  # nested thousands deep: no argument is
                errors[field.name] = [_("Enter valid JSON.")]
        elif field.widget == "select":
            # The choice as the schema has it (2, not "2"); another value goes to validation,
            # which says what the choices are.
            arguments[field.name] = next((c for c in field.choices if str(c) == raw), raw)
        elif field.kind == "integer":
            if INTEGER.fullmatch(raw) and len(raw) <= MAX_DIGITS:
                arguments[field.name] = int(raw)
            else:
                errors[field.name] = [_("Enter a whole number: digits, with an optional sign.")]
        elif field.kind == "number":
            number = _number(raw)
            if number is None:
                errors[field.name] = [_("Enter a number, such as 42, -1.5 or 2e3.")]
            else:
                arguments[field.name] = raw if field.takes_text else number
        else:
            arguments[field.name] = raw
    return arguments, errors


def _number(raw: str) -> int | float | None:
    if not NUMBER.fullmatch(raw) or len(raw) > MAX_DIGITS:
        return None
    if INTEGER.fullmatch(raw):
        return int(raw)
    number = float(raw)
    return number if math.isfinite(number) else None
