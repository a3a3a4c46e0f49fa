"""The OpenAPI 3 document of the ops API, built from api.ROUTES plus the details below.

Every route must have an entry in OPERATIONS (build() fails otherwise), and a test checks the
served document against the app's router both ways.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from leadd import __version__
from leadd.lifecycle import STATES
from leadd.operations.leads import MAX_REASON, MAX_SMS_BODY, OPERATOR_STATES
from leadd.operations.params import MAX_LIMIT

if TYPE_CHECKING:
    from leadd.web.api import Route

Json = dict[str, Any]


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Json, description: str) -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _query(name: str, description: str, schema: Json | None = None) -> Json:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _path(name: str, description: str) -> Json:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


_TIME = {"type": "string", "format": "date-time"}
_NTIME = {"type": "string", "format": "date-time", "nullable": True}
_NSTR = {"type": "string", "nullable": True}
_LEAD_ID = _path("id", "the lead's id (a UUID)")
_CURSOR = _query("cursor", "next_cursor from the previous page")
_LIMIT = _query(
    "limit",
    f"page size, 1-{MAX_LIMIT}",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50},
)
_WINDOW = [
    _query("since", "ISO 8601 date or time (inclusive; UTC without an offset)", _TIME),
    _query("until", "ISO 8601 date or time (exclusive)", _TIME),
]
_LEAD_ERRORS = {
    "401": _json(_ref("Error"), "missing or invalid bearer token"),
    "404": _json(_ref("Error"), "no such lead for this tenant"),
    "503": _json(_ref("Error"), "database unavailable"),
}
_WRITE_ERRORS = {**_LEAD_ERRORS, "403": _json(_ref("Error"), "a read token on a write route")}

OPERATIONS: dict[tuple[str, str], Json] = {
    ("GET", "/leads"): {
        "parameters": [
            _query("state", "current lifecycle state", {"type": "string", "enum": list(STATES)}),
            _query("location", "a configured location id"),
            *_WINDOW,
            _query("q", "name, phone or e-mail (phone matched as E.164, e-mail lower-cased)"),
            _CURSOR,
            _LIMIT,
        ],
        "responses": {
            "200": _json(_ref("LeadList"), "one page of leads"),
            "400": _json(_ref("Error"), "a parameter is unknown or malformed"),
        },
    },
    ("GET", "/leads/{id}"): {
        "parameters": [_LEAD_ID],
        "responses": {"200": _json(_ref("LeadDetail"), "the lead and its timeline")},
    },
    ("POST", "/leads/{id}/state"): {
        "parameters": [_LEAD_ID],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["state", "reason"],
                        "additionalProperties": False,
                        "properties": {
                            "state": {"type": "string", "enum": list(OPERATOR_STATES)},
                            "reason": {"type": "string", "maxLength": MAX_REASON},
                        },
                    }
                }
            },
        },
        "responses": {
            "200": _json(_ref("StateChange"), "moved; a timeline row names the token"),
            "400": _json(_ref("Error"), "bad state or reason"),
            "409": _json(_ref("Error"), "the lifecycle forbids it from current_state"),
        },
    },
    ("POST", "/leads/{id}/pause"): {
        "parameters": [_LEAD_ID],
        "responses": {
            "200": _json(_ref("PauseChange"), "paused (or already paused)"),
            "409": _json(_ref("Error"), "the lead is completed or lost"),
        },
    },
    ("POST", "/leads/{id}/resume"): {
        "parameters": [_LEAD_ID],
        "responses": {
            "200": _json(
                _ref("PauseChange"), "resumed: steps that came due while paused are skipped"
            )
        },
    },
    ("POST", "/leads/{id}/messages"): {
        "parameters": [_LEAD_ID],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["channel", "body"],
                        "additionalProperties": False,
                        "properties": {
                            "channel": {"type": "string", "enum": ["sms"]},
                            "body": {"type": "string", "maxLength": MAX_SMS_BODY},
                        },
                    }
                }
            },
        },
        "responses": {
            "202": _json(_ref("StaffMessage"), "queued; sent at once, any hour"),
            "400": _json(_ref("Error"), "bad channel or body"),
            "409": _json(_ref("Error"), "the phone is opted out (STOP)"),
            "422": _json(_ref("Error"), "the lead has no phone"),
        },
    },
    ("GET", "/report"): {
        "parameters": [*_WINDOW, _query("location", "a configured location id")],
        "responses": {
            "200": _json(_ref("Report"), "the funnel, per location and total"),
            "400": _json(_ref("Error"), "a parameter is unknown or malformed"),
        },
    },
    ("GET", "/opt-outs"): {
        "parameters": [
            _query("channel", "sms or email", {"type": "string", "enum": ["sms", "email"]}),
            _CURSOR,
            _LIMIT,
        ],
        "responses": {"200": _json(_ref("OptOutList"), "one page of opt-outs")},
    },
    ("DELETE", "/opt-outs/{channel}/{address}"): {
        "parameters": [
            _path("channel", "email (an SMS STOP is lifted only by START)"),
            _path("address", "the e-mail address"),
        ],
        "responses": {
            "200": _json(
                {"type": "object", "properties": {"deleted": _ref("OptOut")}},
                "the opt-out is lifted (and recorded with the token's name)",
            ),
            "403": _json(_ref("Error"), "an SMS opt-out, or a read token"),
            "404": _json(_ref("Error"), "no such e-mail opt-out"),
        },
    },
}

_LEAD_SUMMARY = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "state": {"type": "string", "enum": list(STATES)},
        "location_id": {"type": "string"},
        "source": {"type": "string"},
        "order_number": _NSTR,
        "name": {"type": "string"},
        "first_name": _NSTR,
        "last_name": _NSTR,
        "phone": _NSTR,
        "email": _NSTR,
        "paused": {"type": "boolean"},
        "paused_at": _NTIME,
        "attached_to": _NSTR,
        "created_at": _TIME,
        "updated_at": _TIME,
    },
}
_TIMELINE_ENTRY = {
    "type": "object",
    "required": ["type", "at"],
    "properties": {
        "type": {"type": "string", "enum": ["event", "touch_point", "message", "opt_out"]},
        "at": _TIME,
        "from_state": _NSTR,
        "to_state": {"type": "string"},
        "cause": {"type": "string"},
        "actor": _NSTR,
        "step": {"type": "string"},
        "state": {"type": "string"},
        "reason": _NSTR,
        "direction": {"type": "string"},
        "channel": {"type": "string"},
        "text": {"type": "string"},
        "author": _NSTR,
        "dry_run": {"type": "boolean"},
        "delivery_status": _NSTR,
    },
}
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer"}}
_SECTION = {
    "type": "object",
    "properties": {
        "location_id": _NSTR,
        "leads": {"type": "integer"},
        "contacted": {"type": "integer"},
        "replied": {"type": "integer"},
        "reply_rate": {"type": "number", "nullable": True},
        "lost": {"type": "integer"},
        "answered": {"type": "integer"},
        "speed_to_lead_p50": {"type": "number", "nullable": True},
        "speed_to_lead_p90": {"type": "number", "nullable": True},
        "opted_out_sms": {"type": "integer"},
        "opted_out_email": {"type": "integer"},
        "by_source": _COUNTS,
        "by_state": _COUNTS,
        "funnel": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "stage": {"type": "string"},
                    "reached": {"type": "integer"},
                    "conversion": {"type": "number", "nullable": True},
                },
            },
        },
        "messages": {"type": "object", "additionalProperties": _COUNTS},
    },
}
_OPT_OUT = {
    "type": "object",
    "properties": {
        "channel": {"type": "string"},
        "address": {"type": "string"},
        "reason": {"type": "string"},
        "at": _TIME,
    },
}

SCHEMAS: dict[str, Json] = {
    "Error": {
        "type": "object",
        "required": ["success", "error"],
        "properties": {
            "success": {"type": "boolean"},
            "error": {"type": "string"},
            "parameter": {"type": "string"},
            "current_state": {"type": "string"},
        },
    },
    "LeadSummary": _LEAD_SUMMARY,
    "LeadList": {
        "type": "object",
        "properties": {
            "leads": {"type": "array", "items": _ref("LeadSummary")},
            "next_cursor": _NSTR,
        },
    },
    "LeadDetail": {
        "type": "object",
        "properties": {
            "lead": {"type": "object"},
            "timeline": {"type": "array", "items": _TIMELINE_ENTRY},
        },
    },
    "StateChange": {
        "type": "object",
        "properties": {
            "lead_id": {"type": "string"},
            "from_state": {"type": "string"},
            "state": {"type": "string"},
        },
    },
    "PauseChange": {
        "type": "object",
        "properties": {
            "lead_id": {"type": "string"},
            "state": {"type": "string"},
            "paused": {"type": "boolean"},
            "paused_at": _NTIME,
            "changed": {"type": "boolean"},
            "skipped": {"type": "integer"},
        },
    },
    "StaffMessage": {
        "type": "object",
        "properties": {
            "lead_id": {"type": "string"},
            "touch_point_id": {"type": "integer"},
            "status": {"type": "string", "enum": ["queued"]},
            "due_at": _TIME,
        },
    },
    "Report": {
        "type": "object",
        "properties": {
            "since": _TIME,
            "until": _TIME,
            "location_id": _NSTR,
            "total": _SECTION,
            "locations": {"type": "array", "items": _SECTION},
        },
    },
    "OptOut": _OPT_OUT,
    "OptOutList": {
        "type": "object",
        "properties": {
            "opt_outs": {"type": "array", "items": _ref("OptOut")},
            "next_cursor": _NSTR,
        },
    },
}


def build(routes: Sequence[Route]) -> Json:
    """The document for `routes` (all under /api/v1); KeyError for an undescribed route."""
    from leadd.web.api import PREFIX

    paths: dict[str, Json] = {}
    for route in routes:
        suffix = route.path.removeprefix(PREFIX)
        details = OPERATIONS[(route.method, suffix)]
        errors = _WRITE_ERRORS if route.role == "write" else _LEAD_ERRORS
        paths.setdefault(suffix, {})[route.method.lower()] = {
            "summary": route.summary,
            "operationId": route.handler.__name__,
            "x-role": route.role,
            "parameters": details.get("parameters", []),
            **({"requestBody": details["requestBody"]} if "requestBody" in details else {}),
            "responses": {**errors, **details["responses"]},
        }
    paths["/openapi.json"] = {
        "get": {
            "summary": "This document",
            "operationId": "openapi",
            "security": [],
            "responses": {"200": {"description": "OpenAPI 3"}},
        }
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "leadd ops API", "version": __version__},
        "servers": [{"url": PREFIX}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": SCHEMAS,
        },
    }
