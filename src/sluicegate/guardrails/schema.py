"""Validation of an answer against the JSON Schema of `response_format: {type: json_schema}`.

Covers the subset OpenAI's structured outputs accept (type, properties, required, additionalProperties,
items, enum, const, anyOf/oneOf/allOf, $ref into $defs/definitions, string/number/array bounds). Keywords
outside it are ignored rather than guessed at, so an answer is never refused for a keyword we do not know.
"""

from __future__ import annotations

from typing import Any

_MAX_DEPTH = 64

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "null": (type(None),),
}


def first_error(instance: Any, schema: Any) -> str | None:
    """A short description of the first mismatch, or None when `instance` matches `schema`."""
    return _Validator(schema).check(instance, schema, "$", 0)


class _Validator:
    def __init__(self, root: Any) -> None:
        self.root = root

    def check(self, value: Any, schema: Any, path: str, depth: int) -> str | None:
        if depth > _MAX_DEPTH:
            return f"{path}: schema nested too deeply"
        if schema is False:
            return f"{path}: no value is allowed here"
        if not isinstance(schema, dict):
            return None
        if "$ref" in schema:
            target = self._resolve(schema["$ref"])
            if target is None:
                return None
            return self.check(value, target, path, depth + 1)
        for check in (self._type, self._enum, self._combinators, self._object, self._array, self._string, self._number):
            error = check(value, schema, path, depth)
            if error is not None:
                return error
        return None

    def _resolve(self, ref: Any) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#"):
            return None
        node = self.root
        for part in ref[1:].split("/"):
            if not part:
                continue
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def _type(self, value: Any, schema: dict[str, Any], path: str, depth: int) -> str | None:
        wanted = schema.get("type")
        if wanted is None:
            return None
        names = wanted if isinstance(wanted, list) else [wanted]
        if any(_is_type(value, name) for name in names):
            return None
        return f"{path}: expected {' or '.join(map(str, names))}"

    def _enum(self, value: Any, schema: dict[str, Any], path: str, depth: int) -> str | None:
        if "const" in schema and not _equal(value, schema["const"]):
            return f"{path}: expected the constant {schema['const']!r}"
        options = schema.get("enum")
        if isinstance(options, list) and not any(_equal(value, option) for option in options):
            return f"{path}: not one of the allowed values"
        return None

    def _combinators(self, value: Any, schema: dict[str, Any], path: str, depth: int) -> str | None:
        for sub in schema.get("allOf") or ():
            error = self.check(value, sub, path, depth + 1)
            if error is not None:
                return error
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                matches = sum(self.check(value, sub, path, depth + 1) is None for sub in options)
                if matches == 0 or (key == "oneOf" and matches > 1):
                    return f"{path}: matches {'none' if matches == 0 else 'more than one'} of {key}"
        return None

    def _object(self, value: Any, schema: dict[str, Any], path: str, depth: int) -> str | None:
        if not isinstance(value, dict):
            return None
        for name in schema.get("required") or ():
            if name not in value:
                return f"{path}: missing required property '{name}'"
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                error = self.check(item, properties[name], f"{path}.{name}", depth + 1)
            elif extra is False:
                error = f"{path}: unexpected property '{name}'"
            else:
                error = self.check(item, extra, f"{path}.{name}", depth + 1)
            if error is not None:
                return error
        return None

    def _array(self, value: Any, schema: dict[str, Any], path: str, depth: int) -> str | None:
        if not isinstance(value, list):
            return None
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            return f"{path}: {len(value)} items is outside minItems/maxItems"
        items = schema.get("items")
        if isinstance(items, dict):
            for index, item in enumerate(value):
                error = self.check(item, items, f"{path}[{index}]", depth + 1)
                if error is not None:
                    return error
        return None

    def _string(self, value: Any, schema: dict[str, Any], path: str, depth: int) -> str | None:
        if not isinstance(value, str):
            return None
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
            return f"{path}: length {len(value)} is outside minLength/maxLength"
        return None

    def _number(self, value: Any, schema: dict[str, Any], path: str, depth: int) -> str | None:
        if not _is_type(value, "number"):
            return None
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            limit = schema.get(key)
            if isinstance(limit, (int, float)) and not isinstance(limit, bool) and _breaks(key, value, limit):
                return f"{path}: {value} breaks {key} {limit}"
        return None


def _breaks(key: str, value: float, limit: float) -> bool:
    if key == "minimum":
        return value < limit
    if key == "maximum":
        return value > limit
    if key == "exclusiveMinimum":
        return value <= limit
    return value >= limit


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        if isinstance(value, float):
            return value.is_integer()
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    kinds = _TYPES.get(name)
    return kinds is not None and isinstance(value, kinds)


def _equal(left: Any, right: Any) -> bool:
    # JSON equality: True is not 1, but 1 is 1.0
    if _is_type(left, "number") and _is_type(right, "number"):
        return bool(left == right)
    return type(left) is type(right) and bool(left == right)
