"""The OpenAPI 3 description of the console's API, with each launchable's pydantic schema."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from . import registry
from .models import TaskStatus

STATUSES = list(TaskStatus.values)

ERROR = {"$ref": "#/components/schemas/Error"}
#: What each error status says, with the codes of `error` it comes with.
ERROR_DESCRIPTIONS = {
    400: "Bad request: invalid_json, invalid_task, invalid_arguments (with `errors` by "
    "field), invalid_parameter (with `parameter`: a list's status, mine, cursor or limit "
    "that means nothing)",
    401: "not_authenticated (neither session nor token; checked first), invalid_token",
    403: "forbidden, csrf_failed (a session's unsafe request without its CSRF token), "
    "not_launchable",
    404: "not_found, unknown_task",
    409: "finished, cannot_terminate, not_failed, redacted, unmatched_arguments",
    413: "body_too_large (the body, or DATA_UPLOAD_MAX_MEMORY_SIZE), arguments_too_large",
    415: "unsupported_media_type: a body that is not Content-Type: application/json (UTF-8)",
    503: "database_unavailable, broker_unavailable; with Retry-After",
}


def _responses(ok: int, ok_schema: dict[str, Any], *errors: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        str(ok): {"description": "OK", "content": {"application/json": {"schema": ok_schema}}}
    }
    for status in (401, 403, *errors):
        out[str(status)] = {
            "description": ERROR_DESCRIPTIONS.get(status, "Error"),
            "content": {"application/json": {"schema": ERROR}},
        }
    return out


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


def document(request: HttpRequest | None = None) -> dict[str, Any]:
    base = reverse("taskconsole:api_tasks").rsplit("tasks/", 1)[0].rstrip("/")
    launchables = registry.all_launchables()
    defs: dict[str, Any] = {}
    variants = []
    for item in launchables:
        schema = item.json_schema()
        defs.update(schema.pop("$defs", {}))
        key = "Args_" + item.name.replace(".", "_")
        defs[key] = schema
        variants.append(
            {
                "type": "object",
                "required": ["task"],
                "properties": {
                    "task": {"type": "string", "const": item.name},
                    "arguments": {"$ref": f"#/components/schemas/{key}"},
                },
            }
        )
    # pydantic writes references as #/$defs/X; OpenAPI keeps them under components.
    text_defs = _rewrite_refs(defs)
    task_id = {
        "name": "task_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    cursor = [
        {
            "name": "cursor",
            "in": "query",
            "description": "The `next_cursor` of the previous page; anything else is a 400.",
            "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
        },
        {
            "name": "limit",
            "in": "query",
            "description": "Rows per page, 50 if absent; a limit above 200 is served as 200. "
            "Not a whole number from 1 up: a 400.",
            "schema": {"type": "integer", "minimum": 1},
        },
    ]
    page = _obj(
        results={"type": "array", "items": {"$ref": "#/components/schemas/Task"}},
        next_cursor={"type": ["integer", "null"]},
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Task console API",
            "version": "1",
            "description": "Run and watch Celery tasks. Browsers use the session and send "
            "the CSRF token; scripts send `Authorization: Token <key>`.",
        },
        "servers": [{"url": base}],
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "sessionid"},
                "token": {"type": "apiKey", "in": "header", "name": "Authorization"},
            },
            "schemas": {
                "Error": _obj(
                    error={"type": "string"},
                    detail={"type": "string", "description": "In the request's language"},
                    errors={"type": "object"},
                    parameter={"type": "string"},
                ),
                "Task": _obj(
                    task_id={"type": "string"},
                    name={"type": "string"},
                    status={"type": "string", "enum": STATUSES},
                    args={"type": "array"},
                    kwargs={"type": "object"},
                    owner={"type": ["string", "null"]},
                    origin={"type": "string"},
                    queue={"type": "string"},
                    worker={"type": "string"},
                    eta={"type": ["string", "null"], "format": "date-time"},
                    created_at={"type": "string", "format": "date-time"},
                    started_at={"type": ["string", "null"], "format": "date-time"},
                    finished_at={"type": ["string", "null"], "format": "date-time"},
                    result={"type": "string"},
                    exception={"type": "string"},
                    retries={"type": "integer"},
                    parent_id={"type": ["string", "null"]},
                    progress=_obj(
                        current={"type": ["integer", "null"]},
                        total={"type": ["integer", "null"]},
                        message={"type": "string"},
                        percent={"type": ["integer", "null"]},
                    ),
                ),
                "LaunchRequest": {"oneOf": variants} if variants else {"type": "object"},
                **text_defs,
            },
        },
        "security": [{"session": []}, {"token": []}],
        "paths": {
            "/tasks/": {
                "get": {
                    "summary": "Tasks, newest first (keyset pagination)",
                    "parameters": [
                        {
                            "name": "status",
                            "in": "query",
                            "description": "Another value is a 400 (invalid_parameter).",
                            "schema": {"type": "string", "enum": STATUSES},
                        },
                        {"name": "name", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "mine",
                            "in": "query",
                            "description": "1 or true, 0 or false; another value is a 400.",
                            "schema": {"type": "string", "enum": ["1", "true", "0", "false"]},
                        },
                        *cursor,
                    ],
                    "responses": _responses(200, page, 400),
                }
            },
            "/tasks/{task_id}/": {
                "get": {
                    "summary": "One task with its traceback, parent, children and group",
                    "parameters": [task_id],
                    "responses": _responses(200, {"$ref": "#/components/schemas/Task"}, 404),
                }
            },
            "/tasks/{task_id}/cancel/": {
                "post": {
                    "summary": "Revoke a waiting task or terminate a running one (by policy)",
                    "parameters": [task_id],
                    "responses": _responses(200, {"$ref": "#/components/schemas/Task"}, 404, 409),
                }
            },
            "/tasks/{task_id}/retry/": {
                "post": {
                    "summary": "Launch a failed task again with its original arguments",
                    "parameters": [task_id],
                    "responses": _responses(201, _obj(task_id={"type": "string"}), 404, 409),
                }
            },
            "/launchables/": {
                "get": {
                    "summary": "The tasks you may launch, with their argument schemas",
                    "responses": _responses(200, _obj(results={"type": "array"})),
                }
            },
            "/launch/": {
                "post": {
                    "summary": "Launch a task from the launch list",
                    "description": "The body is JSON (Content-Type: application/json, UTF-8). "
                    "Arguments are validated strictly: each value has its field's JSON type "
                    '(an integer field takes 2, not 2.0, "2" or true; a boolean only true '
                    "or false; a string field only a string); dates, UUIDs and decimals are "
                    "strings.",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/LaunchRequest"}
                            }
                        },
                    },
                    "responses": _responses(
                        201, _obj(task_id={"type": "string"}), 400, 404, 413, 415, 503
                    ),
                }
            },
            "/periodic/": {
                "get": {
                    "summary": "Periodic tasks: schedule in words, next runs, last outcome",
                    "responses": _responses(200, _obj(results={"type": "array"})),
                }
            },
            "/periodic/{id}/{action}/": {
                "post": {
                    "summary": "Enable, disable or run a periodic task now",
                    "parameters": [
                        {
                            "name": "id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer"},
                        },
                        {
                            "name": "action",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "enum": ["enable", "disable", "run"]},
                        },
                    ],
                    "description": "run sends the stored arguments as the task's launch "
                    "schema validates them (strictly), or answers 400 invalid_arguments.",
                    "responses": _responses(200, _obj(), 400, 404, 409, 503),
                }
            },
            "/workers/": {
                "get": {
                    "summary": "Online workers, queue lengths, tasks per minute (last hour)",
                    "responses": _responses(200, _obj()),
                }
            },
            "/audit/": {
                "get": {
                    "summary": "Who launched, cancelled, retried or changed what, and when",
                    "parameters": cursor,
                    "responses": _responses(200, _obj(results={"type": "array"}), 400),
                }
            },
        },
    }


def _rewrite_refs(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (
                v.replace("#/$defs/", "#/components/schemas/")
                if k == "$ref" and isinstance(v, str)
                else _rewrite_refs(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_rewrite_refs(v) for v in value]
    return value
