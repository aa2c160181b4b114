"""Request bodies are checked against the schema the instance publishes at /openapi.json (schema.py):
one source for the fields and limits the document states and the service enforces."""

import dataclasses
import json

import pytest

from pkgsign_testlib import ED_KEY, bearer, state_json
from pkgsign import schema


@pytest.fixture(scope="module")
def small_limits(instance):
    """A Flask client over the session instance's state with its own limits: 3 states per
    request, sha512 only (what an instance's pkgsign.conf [signing] section sets)."""
    from pkgsign.app import create_app
    from pkgsign.config import load_config

    config = dataclasses.replace(load_config(instance.config), max_digests_per_request=3,
                                 allowed_digests=("sha512",), default_digest="sha512")
    app = create_app(config)
    app.testing = True
    yield app.test_client()
    app.extensions["pkgsign"].agent.close()


def _sign(client, instance, **fields):
    body = {"key": ED_KEY, "states": [state_json(b"abc", fields.get("digest_algo", "sha256"))]}
    body.update(fields)
    return client.post("/sign", json=body, headers=bearer(instance))


def test_served_document_carries_the_instance_limits_and_they_are_enforced(small_limits, instance):
    document = small_limits.get("/openapi.json").get_json()
    request_schema = document["components"]["schemas"]["SignRequest"]["properties"]
    assert request_schema["states"]["maxItems"] == 3
    assert request_schema["digest_algo"]["enum"] == ["sha512"]
    good = state_json(b"data", "sha512")
    ok = _sign(small_limits, instance, digest_algo="sha512", states=[good] * 3)
    assert ok.status_code == 200 and len(ok.get_json()["signatures"]) == 3, ok.get_json()
    over = _sign(small_limits, instance, digest_algo="sha512", states=[good] * 4)
    assert over.status_code == 400 and over.get_json()["error"] == "at most 3 states per request"
    refused = _sign(small_limits, instance, digest_algo="sha256")
    assert refused.status_code == 400
    assert refused.get_json()["error"] == "digest_algo sha256 is not allowed here (allowed: sha512)"


def test_a_default_instance_serves_the_shipped_limits(app_client):
    from pkgsign.config import DEFAULT_MAX_DIGESTS

    served = app_client.get("/openapi.json").get_json()
    with open(schema.DOCUMENT) as handle:
        shipped = json.load(handle)
    assert served["components"]["schemas"]["SignRequest"]["properties"]["states"]["maxItems"] == DEFAULT_MAX_DIGESTS
    assert shipped["components"]["schemas"]["SignRequest"]["properties"]["states"]["maxItems"] == DEFAULT_MAX_DIGESTS
    assert served["paths"] == shipped["paths"]
    # The shipped document states the defaults of Config (tools/openapi.py): an instance left at
    # its defaults serves the same request schemas, descriptions aside.
    for name in schema.REQUEST_SCHEMAS:
        assert _without_descriptions(served["components"]["schemas"][name]) == \
            _without_descriptions(shipped["components"]["schemas"][name]), name


def _without_descriptions(node):
    if isinstance(node, dict):
        return {key: _without_descriptions(value) for key, value in node.items() if key != "description"}
    return [_without_descriptions(item) for item in node] if isinstance(node, list) else node


@pytest.mark.parametrize("changes, message", [
    ({"states": [dict(state_json(b"x"), byte_count="3")]}, "states[0].byte_count must be an integer from 0 to %d" % 2 ** 60),
    ({"states": [dict(state_json(b"x"), byte_count=2 ** 61)]}, "states[0].byte_count must be an integer from 0 to %d" % 2 ** 60),
    ({"states": [dict(state_json(b"x"), tail=5)]}, "states[0].tail must be a string"),
    ({"states": [state_json(b"x"), dict(state_json(b"x"), chaining_value="x" * 900_000)]},
     "states[1].chaining_value must be a string of hex digit pairs"),
    ({"states": [dict(state_json(b"x"), tail="00\n")]}, "states[0].tail must be a string of hex digit pairs"),
    ({"sig_type": ["binary"]}, "sig_type must be binary or text"),
    ({"armor": 1}, "armor must be true or false"),
])
def test_a_body_the_schema_refuses_is_400_naming_the_field(app_client, instance, changes, message):
    response = _sign(app_client, instance, **changes)
    assert response.status_code == 400 and response.get_json()["error"] == message


def test_unknown_fields_are_refused_by_the_schema(app_client, instance):
    document = app_client.get("/openapi.json").get_json()
    for name in schema.REQUEST_SCHEMAS:
        assert document["components"]["schemas"][name]["additionalProperties"] is False, name
    response = _sign(app_client, instance, zeta=1, alpha=2)
    assert response.status_code == 400 and response.get_json()["error"] == "unknown field(s): alpha, zeta"
    nested = _sign(app_client, instance, states=[dict(state_json(b"x"), extra="00")])
    assert nested.status_code == 400 and "states[0] must have exactly the fields" in nested.get_json()["error"]
    form = app_client.post("/gen_key", data={"name_real": "x", "name_email": "x#y@copr.test", "colour": "red"},
                           headers=bearer(instance, "admin"))
    assert form.status_code == 400 and form.get_json()["error"] == "unknown field(s): colour"


def test_gen_key_form_bodies_go_through_the_schema(app_client, instance):
    """A form value is always a string: one the schema refuses is named (algorithm takes no "")."""
    form = app_client.post("/gen_key", data={"name_real": "x", "name_email": "x#y@copr.test", "algorithm": "rsa1"},
                           headers=bearer(instance, "admin"))
    assert form.status_code == 400 and "algorithm" in form.get_json()["error"]


HOSTILE = [
    b'{"key": "' + ED_KEY.encode() + b'", "states": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"key": "' + ED_KEY.encode() + b'", "states": [{"chaining_value": "00", "byte_count": 1' + b"0" * 5000 + b', "tail": ""}]}',
    b'{"key": "' + ED_KEY.encode() + b'", "states": [{"chaining_value": "00", "byte_count": 1e999, "tail": ""}]}',
    b'{"key": "' + ED_KEY.encode() + b'", "states": [], "sig_type": "\\ud800"}',
    b'{"key": "' + ED_KEY.encode() + b'", "digest_algo": "' + b"s" * 1_000_000 + b'"}',
    b'{"key": "' + ED_KEY.encode() + b'", "digest_algo": "' + b"s" * 900_000 + b'", "states": [1]}',
    b'{"key": "' + ED_KEY.encode() + b'", "states": [' + b"{}," * 200_000 + b'{}]}',
    b'{"key": "' + ED_KEY.encode() + b'", "states": ' + b'{"a": ' * 400 + b"1" + b"}" * 401,
    b'{"key": "' + ED_KEY.encode() + b'", "states": [{"chaining_value": null, "byte_count": true, "tail": []}]}',
]


@pytest.mark.parametrize("raw", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_bodies_get_4xx_with_a_message(app_client, instance, raw):
    response = app_client.post("/sign", data=raw, content_type="application/json", headers=bearer(instance))
    assert response.status_code in (400, 413), response.get_json()
    error = response.get_json()["error"]
    assert error and len(error) < 400, error[:200]


def test_nullable_becomes_json_schema():
    components = {"State": {"type": "object", "properties": {"n": {"type": "integer", "nullable": True}}}}
    assert schema.to_json_schema({"$ref": "#/components/schemas/State"}, components) == {
        "type": "object", "properties": {"n": {"anyOf": [{"type": "null"}, {"type": "integer"}]}}}


def test_a_final_dollar_is_the_end_of_the_string_as_in_the_document():
    """Python's "$" matches before a final newline, ECMA 262's (the document's dialect) does not."""
    import jsonschema

    checked = schema.to_json_schema({"type": "string", "pattern": "^[0-9a-f]{2}$"}, {})
    assert jsonschema.Draft4Validator(checked).is_valid("ab")
    assert not jsonschema.Draft4Validator(checked).is_valid("ab\n")


def test_validators_are_compiled_once_per_process(app_client, instance):
    schemas = app_client.application.extensions["pkgsign"].schemas
    before = dict(schemas.validators)
    assert _sign(app_client, instance).status_code == 200
    assert schemas.validators == before and all(schemas.validators[name] is before[name] for name in before)


OTHER_BODIES = [
    ("/gen_key", b'{"name_real": "' + b"x" * 900_000 + b'", "name_email": "x#y@copr.test"}'),
    ("/gen_key", b'{"name_real": "x", "name_email": "x#y@copr.test", "expire": 1e999}'),
    ("/gen_key", b'{"name_real": "x", "name_email": "x#y@copr.test", "key_length": ' + b"[" * 3000 + b"]" * 3000 + b"}"),
    ("/gen_key", b'{"name_real": "\\udfff", "name_email": "x#y@copr.test"}'),
    ("/sign/rpm", b'{"key_type": "modern", "package_hash": {"chaining_value": "' + b"0" * 900_000 + b'", "byte_count": 0, "tail": ""}}'),
    ("/sign/rpm", b'{"key_type": "modern", "distribution": 12, "package_hash": ' + b"[" * 3000 + b"]" * 3000 + b"}"),
    ("/sign/repodata", b'{"key_type": "modern", "repodata_hash": {"chaining_value": "00", "byte_count": -1e308, "tail": ""}}'),
    ("/sign/repodata", b'{"key_type": "modern", "repodata_hash": null, "extra": "\\ud800"}'),
]


@pytest.mark.parametrize("path, raw", OTHER_BODIES, ids=range(len(OTHER_BODIES)))
def test_hostile_bodies_elsewhere_get_400_with_a_message(app_client, instance, path, raw):
    response = app_client.post(path, data=raw, content_type="application/json", headers=bearer(instance, "admin"))
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert error and len(error) < 400, error[:200]
