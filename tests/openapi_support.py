"""Reading the served OpenAPI document the way a client would: valid example values from a
property's schema, and values that break each constraint it declares."""

from __future__ import annotations

import re
from typing import Any, Iterator

# Strings tried, in order, for a property that declares a pattern: the first that matches is used.
CANDIDATES = ("sample", "sample_1", "a")


def resolve(node: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = doc["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def non_null(schema: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """The schema of a value that is not null (`X | None` is `anyOf: [X, null]`)."""
    schema = resolve(schema, doc)
    if "anyOf" in schema:
        options = [resolve(s, doc) for s in schema["anyOf"] if s.get("type") != "null"]
        assert len(options) == 1, schema
        return options[0]
    return schema


def nullable(schema: dict[str, Any]) -> bool:
    return any(s.get("type") == "null" for s in schema.get("anyOf", []))


def example(schema: dict[str, Any], doc: dict[str, Any]) -> Any:
    """A valid value: the least the schema allows, every property of an object filled in."""
    s = non_null(schema, doc)
    if "enum" in s:
        return s["enum"][0]
    if "const" in s:
        return s["const"]
    kind = s.get("type")
    if kind == "object":
        return {name: example(prop, doc) for name, prop in s.get("properties", {}).items()}
    if kind == "boolean":
        return True
    if kind in ("integer", "number"):
        return s.get("minimum", s.get("exclusiveMinimum", 0) + 1)
    if kind == "array":
        return items(s, doc, s.get("minItems", 0))
    assert kind == "string", s
    if s.get("format") == "email":
        return "someone@example.com"
    return string_of(s, max(s.get("minLength", 0), len(CANDIDATES[0])))


def items(s: dict[str, Any], doc: dict[str, Any], count: int) -> list[Any]:
    """`count` valid items of an array schema."""
    return [example(s["items"], doc) for _ in range(count)]


def string_of(s: dict[str, Any], length: int) -> str:
    """A string of exactly `length` characters that matches the schema's pattern."""
    for candidate in CANDIDATES:
        value = (candidate * (length // len(candidate) + 1))[:length]
        if "pattern" not in s or re.search(s["pattern"], value):
            return value
    raise AssertionError(f"no candidate string fits {s}")


def violations(schema: dict[str, Any], doc: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(constraint, value) pairs: each value breaks exactly the named constraint of the property."""
    s = non_null(schema, doc)
    kind = s.get("type")
    if "enum" in s:
        yield "enum", "not-one-of-them" if kind == "string" else 999_999
    if kind == "boolean":
        yield "type boolean (0)", 0
        yield "type boolean ('true')", "true"
    if kind == "integer":
        yield "type integer (1.5)", 1.5
        yield "type integer ('5')", "5"
    if kind == "number":
        yield "type number ('5')", "5"
    if kind in ("integer", "number"):
        if "minimum" in s:
            yield "minimum", s["minimum"] - 1
        if "maximum" in s:
            yield "maximum", s["maximum"] + 1
    if kind == "string":
        yield "type string", 5
        if s.get("minLength", 0) > 0:
            yield "minLength", string_of(s, s["minLength"] - 1) if s["minLength"] > 1 else ""
        if "maxLength" in s:
            yield "maxLength", string_of(s, s["maxLength"] + 1)
        if "pattern" in s:
            wrong = next(v for v in ("   ", "no spaces allowed!") if not re.search(s["pattern"], v))
            yield "pattern", wrong
    if kind == "object":
        yield "type object", "text"
    if kind == "array":
        yield "type array", "text"
        if s.get("minItems", 0) > 0:
            yield "minItems", items(s, doc, s["minItems"] - 1)
        if "maxItems" in s:
            yield "maxItems", items(s, doc, s["maxItems"] + 1)
    if not nullable(schema):
        yield "not null", None


def boundaries(schema: dict[str, Any], doc: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(constraint, value) pairs: each value sits exactly on the named limit, so it must be accepted."""
    s = non_null(schema, doc)
    kind = s.get("type")
    if kind in ("integer", "number"):
        for key in ("minimum", "maximum"):
            if key in s:
                yield key, s[key]
    if kind == "number":
        yield "integer is a number", int(s.get("minimum", 0)) + (1 if s.get("minimum", 0) % 1 else 0)
    if kind == "string" and s.get("format") != "email":
        for key in ("minLength", "maxLength"):
            if key in s:
                yield key, string_of(s, s[key])
    if kind == "array":
        for key in ("minItems", "maxItems"):
            if key in s:
                yield key, items(s, doc, s[key])
    if "enum" in s:
        for value in s["enum"]:
            yield f"enum {value!r}", value
    if nullable(schema):
        yield "null", None
