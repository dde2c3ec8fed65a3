"""Declared /v1 routes: each handler states its request and response models beside it.

The declarations do three jobs from one source: validate input (pydantic, with
field-level 422 details), register the aiohttp route, and describe the route in the
OpenAPI document, so the document cannot miss a route or describe one that is gone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Awaitable, Callable, Iterable

import pydantic
import pydantic_core
from aiohttp import web

from server.appkeys import AUTHENTICATE, ENDPOINTS, SETTINGS
from server.web.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, ValidationFailed

Handler = Callable[..., Awaitable[web.StreamResponse]]


NUL = "\x00"


def _reject_nul(value: Any) -> Any:
    # Postgres cannot store U+0000 in text: letting one through turns a typo into a 500.
    if isinstance(value, str) and NUL in value:
        raise pydantic_core.PydanticCustomError("nul_character", "must not contain the NUL character (U+0000)")
    if isinstance(value, dict):
        for item in value.values():
            _reject_nul(item)
    elif isinstance(value, list):
        for item in value:
            _reject_nul(item)
    return value


class ApiModel(pydantic.BaseModel):
    """Base of request bodies: unknown fields are an error, not silently dropped; types are strict
    (`0` is not a boolean, `"5"` not a number), as the JSON schema says; no string holds a NUL."""

    model_config = pydantic.ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)

    @pydantic.field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return _reject_nul(value)


class ApiQuery(ApiModel):
    """Base of query-string models: every value arrives as text, so numbers are parsed from it."""

    model_config = pydantic.ConfigDict(strict=False)


def _not_blank(value: Any) -> Any:
    if isinstance(value, str) and value and not value.strip():
        raise pydantic_core.PydanticCustomError("blank", "must contain more than spaces")
    return value


# Free text that must say something: validated before trimming, so "   " is called blank rather than
# "too short", and documented as the pattern a client can check the same way.
NonBlank = Annotated[str, pydantic.BeforeValidator(_not_blank), pydantic.Field(json_schema_extra={"pattern": r"\S"})]


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type[pydantic.BaseModel] | None = None
    query: type[pydantic.BaseModel] | None = None
    response: type[pydantic.BaseModel] | None = None
    status: int = 200
    responses: dict[str, Any] = field(default_factory=dict)
    auth: bool = True
    tags: tuple[str, ...] = ()
    name: str | None = None


class ApiRoutes:
    """Like aiohttp's RouteTableDef, but every route carries its schema."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.endpoints: list[Endpoint] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        body: type[pydantic.BaseModel] | None = None,
        query: type[pydantic.BaseModel] | None = None,
        response: type[pydantic.BaseModel] | None = None,
        status: int = 200,
        responses: dict[str, Any] | None = None,
        auth: bool = True,
        name: str | None = None,
    ) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            async def wrapped(request: web.Request) -> web.StreamResponse:
                if auth:
                    await request.app[AUTHENTICATE](request)
                check_request_text(request)
                kwargs: dict[str, Any] = {}
                if body is not None:
                    kwargs["body"] = await parse_body(request, body)
                if query is not None:
                    kwargs["query"] = parse_model(query, dict(request.query), location="query")
                return await handler(request, **kwargs)

            wrapped.__name__ = handler.__name__
            wrapped.__doc__ = handler.__doc__
            self.endpoints.append(
                Endpoint(
                    method=method.upper(),
                    path=path,
                    handler=wrapped,
                    summary=summary,
                    body=body,
                    query=query,
                    response=response,
                    status=status,
                    responses=responses or {},
                    auth=auth,
                    tags=(self.tag,),
                    name=name,
                )
            )
            return handler

        return decorate

    def get(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **kw)

    def register(self, app: web.Application) -> None:
        for ep in self.endpoints:
            app.router.add_route(ep.method, ep.path, ep.handler, name=ep.name)
        app[ENDPOINTS].extend(self.endpoints)


async def parse_body(request: web.Request, model: type[pydantic.BaseModel]) -> pydantic.BaseModel:
    limit = request.app[SETTINGS].max_json_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"JSON bodies are limited to {limit} bytes", details={"limit": limit})
    if request.content_type != "application/json":
        raise UnsupportedMediaType("Send the body as application/json", details={"expected": "application/json"})
    raw = bytearray()
    async for chunk in request.content.iter_chunked(16384):
        raw.extend(chunk)
        if len(raw) > limit:
            raise PayloadTooLarge(f"JSON bodies are limited to {limit} bytes", details={"limit": limit})
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("The body is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise BadRequest("The body must be a JSON object", code="invalid_json")
    return parse_model(model, data, location="body")


def parse_model(model: type[pydantic.BaseModel], data: dict[str, Any], *, location: str) -> pydantic.BaseModel:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ValidationFailed.for_fields(validation_details(exc, location)) from None


def check_request_text(request: web.Request) -> None:
    """The query string and path parameters of a declared route: a NUL there is refused like one in
    the body (routes without a query model never read it, but nothing should reach us unchecked)."""
    problems = [
        {"field": name, "location": location, "message": "must not contain the NUL character (U+0000)",
         "type": "nul_character"}
        for location, values in (("query", request.query), ("path", request.match_info))
        for name, value in values.items()
        if NUL in name or NUL in value
    ]
    if problems:
        raise ValidationFailed.for_fields(problems)


def validation_details(exc: pydantic.ValidationError, location: str) -> list[dict[str, str]]:
    # The offending input is left out on purpose: it may be a password.
    return [
        {
            "field": ".".join(str(p) for p in err["loc"]) or location,
            "location": location,
            "message": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    if isinstance(data, pydantic.BaseModel):
        data = data.model_dump(mode="json")
    return web.json_response(data, status=status, headers=headers, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


# --- OpenAPI -----------------------------------------------------------------

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {},
            },
        }
    },
}


# What every request model enforces beyond each field's own schema (see ApiModel).
INPUT_RULES = ("Request bodies are JSON objects validated strictly: unknown fields are refused, `0` is not a "
               "boolean and `\"5\"` is not a number. No string, in a body, query or path, may contain U+0000 "
               "(NUL). A 422 `validation_failed` lists the fields in `details.fields`; its message names the first.")


def openapi_path(path: str) -> str:
    """aiohttp's `{name:regex}` becomes OpenAPI's `{name}`."""
    return re.sub(r"\{(\w+):[^}]+\}", r"{\1}", path)


def build_openapi(endpoints: Iterable[Endpoint], *, title: str, version: str) -> dict[str, Any]:
    endpoints = list(endpoints)
    models: dict[str, type[pydantic.BaseModel]] = {}
    for ep in endpoints:
        for model in (ep.body, ep.query, ep.response):
            if model is not None:
                models[model.__name__] = model
    _, defs = pydantic.json_schema.models_json_schema(
        [(m, "validation") for m in models.values()], ref_template="#/components/schemas/{model}"
    )
    schemas = dict(defs.get("$defs", {}))
    schemas["Error"] = ERROR_SCHEMA

    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        path = openapi_path(ep.path)
        op: dict[str, Any] = {
            "summary": ep.summary,
            "operationId": f"{ep.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', path.lower()).strip('_')}",
            "tags": list(ep.tags),
        }
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"\{(\w+)\}", path)
        ]
        if ep.query is not None:
            qschema = ep.query.model_json_schema()
            required = set(qschema.get("required", []))
            for name, prop in qschema.get("properties", {}).items():
                params.append({"name": name, "in": "query", "required": name in required, "schema": prop})
        if params:
            op["parameters"] = params
        if ep.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ep.body.__name__}"}}},
            }
        responses: dict[str, Any] = {}
        if ep.response is not None:
            responses[str(ep.status)] = {
                "description": "Success",
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ep.response.__name__}"}}},
            }
        elif str(ep.status) not in ep.responses:
            responses[str(ep.status)] = {"description": "Success"}
        responses.update(ep.responses)
        responses["default"] = {
            "description": "Error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        op["responses"] = responses
        if ep.auth:
            op["security"] = [{"bearerAuth": []}]
        paths.setdefault(path, {})[ep.method.lower()] = op

    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": INPUT_RULES},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
