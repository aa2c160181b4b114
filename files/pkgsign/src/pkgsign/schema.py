"""The request bodies' schemas: the published OpenAPI document (openapi.json, written by
tools/openapi.py) with this instance's limits filled in, served at /openapi.json and compiled once
per process into the validators the views check bodies with, so what is published and what is
enforced are one source.

The document stays OpenAPI 3.0 (schemathesis and most clients read it best); its schemas differ
from JSON Schema in two ways translated here: ``nullable`` (an anyOf with null) and ``$ref`` to
components (inlined; the document has no recursive schema). Draft 4 is the JSON Schema that
OpenAPI 3.0's schema object extends (an integer is never 1.0, exclusiveMinimum is a boolean);
jsonschema has it from 2.x through 4.26."""

import json
import os

import jsonschema

from . import hashstate
from .config import DEFAULT_EMAIL_PATTERN, ORACLE_MAX_NAME

DOCUMENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openapi.json")
REQUEST_SCHEMAS = ("SignRequest", "GenKeyRequest", "OracleRpmRequest", "OracleRepodataRequest")
# Enum fields compared without case, as the views always did ("SHA256", "ED25519").
CASE_FOLDED = ("digest_algo", "algorithm")

_ORACLE_NAME_MESSAGE = "{field} must be a string of letters, digits, '.', '_', '+' or '-' (at most %d)" % ORACLE_MAX_NAME
_HASH_STATE_MESSAGE = "{field} must be the hash state {{chaining_value, byte_count, tail}}"
# Messages clients and tests know, per field ("*": any list index) and failed keyword (None: any);
# every other failure gets a generic line naming the field (message_for).
MESSAGES = {
    ("states", "maxItems"): "at most {limit} states per request",
    ("states", None): "states must be a non-empty list of hash states",
    ("states.*", "type"): "{field} must be an object with chaining_value, byte_count, tail",
    ("states.*", "additionalProperties"): "{field} must have exactly the fields chaining_value, byte_count, tail",
    ("sig_type", None): "sig_type must be binary or text",
    ("armor", None): "armor must be true or false",
    ("digest_algo", "enum"): "digest_algo {value} is not allowed here (allowed: {allowed})",
    **{("%s.%s" % (state, field), "pattern"): "{field} must be a string of hex digit pairs"
       for state in ("states.*", "package_hash", "repodata_hash") for field in ("chaining_value", "tail")},
    **{(state + ".byte_count", None): "{field} must be an integer from 0 to %d" % hashstate.MAX_BYTE_COUNT
       for state in ("states.*", "package_hash", "repodata_hash")},
    ("distribution", None): _ORACLE_NAME_MESSAGE,
    ("key_type", None): _ORACLE_NAME_MESSAGE,
    ("package_hash", "type"): _HASH_STATE_MESSAGE,
    ("package_hash", "additionalProperties"): _HASH_STATE_MESSAGE,
    ("repodata_hash", "type"): _HASH_STATE_MESSAGE,
    ("repodata_hash", "additionalProperties"): _HASH_STATE_MESSAGE,
}
TYPE_NAMES = {"string": "a string", "integer": "an integer", "number": "a number", "object": "an object",
              "array": "a list", "boolean": "true or false", "null": "null"}


class BodyError(ValueError):
    """A request body its schema refuses; str() is one line naming the field, ``keyword`` the
    JSON Schema keyword that failed."""

    def __init__(self, message, keyword):
        super().__init__(message)
        self.keyword = keyword


def instance_document(config):
    """The published document with this instance's limits: the digests it signs from hash states,
    its default digest, max_digests_per_request, [keygen] max_field_length and name_email_pattern."""
    with open(DOCUMENT, encoding="utf-8") as handle:
        document = json.load(handle)
    schemas = document["components"]["schemas"]
    digests = [algo for algo in config.allowed_digests if algo in hashstate.ALGORITHMS]
    for name in ("SignRequest", "OracleRpmRequest", "OracleRepodataRequest"):
        schemas[name]["properties"]["digest_algo"].update(enum=digests, default=config.default_digest)
    states = schemas["SignRequest"]["properties"]["states"]
    states["maxItems"] = config.max_digests_per_request
    states["description"] = "one hash state per file; at most %d (this instance's max_digests_per_request)" \
        % config.max_digests_per_request
    gen_key = schemas["GenKeyRequest"]["properties"]
    for field in ("name_real", "name_email", "name_comment"):
        gen_key[field]["maxLength"] = config.max_field_length
    if config.name_email_pattern != DEFAULT_EMAIL_PATTERN:
        # Checked as well by the key store with Python's re (ASCII classes, full match).
        gen_key["name_email"]["allOf"] = [{"pattern": config.name_email_pattern}]
    return document


def to_json_schema(node, components):
    """An OpenAPI 3.0 schema as plain JSON Schema for Python's re: $ref inlined, nullable as
    anyOf with null, a final "$" as "\\Z"."""
    if isinstance(node, list):
        return [to_json_schema(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return to_json_schema(components[node["$ref"].rpartition("/")[2]], components)
    schema = {key: to_json_schema(value, components) for key, value in node.items()
              if key not in ("nullable", "description", "example")}
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and pattern.endswith("$") and not pattern.endswith("\\$"):
        # ECMA 262's "$" (the document's dialect) is the end of the string; Python's also matches
        # before a final newline, which would let "<hex>\n" through.
        schema["pattern"] = pattern[:-1] + "\\Z"
    if node.get("nullable"):
        return {"anyOf": [{"type": "null"}, schema]}
    return schema


class RequestSchemas:
    """This instance's document (``text``, what /openapi.json serves) and one compiled validator
    per request schema, built once per process."""

    def __init__(self, config):
        document = instance_document(config)
        self.text = json.dumps(document, indent=1)
        components = document["components"]["schemas"]
        self.schemas = {name: to_json_schema(components[name], components) for name in REQUEST_SCHEMAS}
        self.validators = {name: jsonschema.Draft4Validator(schema) for name, schema in self.schemas.items()}

    def check(self, name, body):
        """Raises BodyError for the first failure of ``body`` (a dict) against schema ``name``.
        The case-folded enum fields are lowered in place first."""
        for field in CASE_FOLDED:
            if isinstance(body.get(field), str):
                body[field] = body[field].lower()
        properties = self.schemas[name].get("properties", {})
        for field, schema in properties.items():
            value, limit = body.get(field), schema.get("maxItems")
            if isinstance(value, list) and isinstance(limit, int) and len(value) > limit + 1:
                # Over its limit anyway: validate limit + 1 items, not every one (a 1 MB list of
                # states cost seconds of CPU a request). The error chosen below stays the same:
                # the list's own maxItems error ranks before any of its items' errors.
                body = dict(body)
                body[field] = value[:limit + 1]
        order = list(properties)
        errors = list(self.validators[name].iter_errors(body))
        if errors:
            first = min(errors, key=lambda error: _rank(error, order))
            raise BodyError(message_for(first), first.validator)


def _rank(error, order):
    """Unknown fields first (as the views always answered), then in the schema's field order."""
    path = list(error.absolute_path)
    first = path[0] if path else None
    return (error.validator != "additionalProperties" or bool(path),
            order.index(first) if first in order else -1, len(path))


def message_for(error):
    """One readable line for a jsonschema error; never the (maybe huge) value, except a short one
    that names what was refused."""
    path = list(error.absolute_path)
    keyword = error.validator
    if keyword == "required":
        missing = [field for field in error.validator_value if field not in error.instance]
        path = path + missing[:1]
    field = "".join("[%d]" % part if isinstance(part, int) else ("." if index else "") + part
                    for index, part in enumerate(path)) or "the body"
    pattern = ".".join("*" if isinstance(part, int) else part for part in path)
    template = MESSAGES.get((pattern, keyword)) or MESSAGES.get((pattern, None))
    value = error.instance
    if template:
        return template.format(field=field, limit=error.validator_value,
                               value=value[:64] if isinstance(value, str) else value,
                               allowed=", ".join(error.validator_value) if keyword == "enum" else "")
    return _generic(field, keyword, error)


def _generic(field, keyword, error):
    limit = error.validator_value
    if keyword == "required":
        return "%s is required" % field
    if keyword == "additionalProperties":
        known = error.schema.get("properties", {})
        unknown = sorted(str(name)[:64] for name in error.instance if name not in known)
        return "unknown field(s)%s: %s" % ("" if field == "the body" else " in " + field, ", ".join(unknown))
    if keyword == "type":
        types = limit if isinstance(limit, list) else [limit]
        return "%s must be %s" % (field, " or ".join(TYPE_NAMES.get(name, name) for name in types))
    if keyword == "enum":
        return "%s must be one of %s" % (field, ", ".join("null" if item is None else str(item) for item in limit))
    if keyword in ("minLength", "maxLength"):
        return "%s must be %s %d characters" % (field, "at least" if keyword == "minLength" else "at most", limit)
    if keyword in ("minItems", "maxItems"):
        return "%s must have %s %d items" % (field, "at least" if keyword == "minItems" else "at most", limit)
    if keyword in ("minimum", "maximum"):
        return "%s must be an integer %s %d" % (field, ">=" if keyword == "minimum" else "<=", limit)
    if keyword in ("anyOf", "oneOf"):
        return "%s is none of the forms this service takes (see /openapi.json)" % field
    if keyword == "pattern":
        return "%s has a character or a form not allowed here" % field
    return "%s is not valid here (%s)" % (field, keyword)
