"""HTML form fields generated from a launchable's pydantic JSON schema."""

from __future__ import annotations

import json
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
            )
        )
    return fields


def arguments_from_post(
    schema: dict[str, Any], post
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The raw arguments typed into the form (pydantic coerces '3' to 3), and JSON errors."""
    arguments: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for field in schema_fields(schema):
        raw = post.get(field.name)
        if field.widget == "checkbox":
            arguments[field.name] = raw in {"on", "true", "1"}
        elif raw in (None, ""):
            continue
        elif field.widget == "json":
            try:
                arguments[field.name] = json.loads(raw)
            except (ValueError, RecursionError):  # nested thousands deep: no argument is
                errors[field.name] = [_("Enter valid JSON.")]
        else:
            arguments[field.name] = raw
    return arguments, errors
