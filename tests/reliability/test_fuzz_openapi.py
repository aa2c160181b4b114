# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Schemathesis against the live service's own /openapi.json (127.0.0.1 only).

Every operation, each with no token, a garbage token, a sign-only token limited to one key
pattern and an all-scopes admin token: no answer is a 5xx, and every answer conforms to the
document (status code declared, content type, headers, body schema). Examples are bounded so
the default run stays short; PKGSIGN_SOAK=1 multiplies them.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                               response_headers_conformance, response_schema_conformance,
                                               status_code_conformance)

from conftest import soak_enabled

EXAMPLES = 150 if soak_enabled() else 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
TOKENS = ("none", "garbage", "limited", "admin")
TRIED = {}


@pytest.fixture(scope="module")
def live(new_instance_module):
    inst = new_instance_module
    inst.add_token("admin", ["sign", "keygen", "admin"], ["*"])
    inst.add_token("limited", ["sign"], ["fuzz#*@copr.test"])
    inst.set_option("aliases", "modern", "fuzz#one@copr.test")
    inst.start()
    for email in ("fuzz#one@copr.test", "other#two@copr.test"):
        status, _ignored, body = inst.request("POST", "/gen_key", {"name_real": "fuzz", "name_email": email})
        assert status == 201, body
    schema = schemathesis.openapi.from_url(inst.url + "/openapi.json")
    yield inst, schema


def _operations(schema):
    return [result.ok() for result in schema.get_all_operations()]


def test_every_documented_operation_is_fuzzed(live):
    inst, schema = live
    labels = {op.label for op in _operations(schema)}
    assert {"POST /gen_key", "POST /sign", "GET /pubkey/{key}", "GET /keys/{key}",
            "DELETE /keys/{key}", "GET /health/ready"} <= labels, labels


@pytest.mark.parametrize("mode", ["positive", "negative"])
@pytest.mark.parametrize("token", TOKENS)
def test_fuzz_every_operation(live, token, mode):
    inst, schema = live
    headers = {}
    if token == "garbage":
        headers["Authorization"] = "Bearer pks_this-is-not-a-token-at-all"
    elif token != "none":
        headers["Authorization"] = "Bearer " + inst.tokens[token]
    for operation in _operations(schema):
        if operation.label == "DELETE /keys/{key}" and token == "admin":
            continue  # covered below on throw-away keys, so the fuzz targets stay in place
        count = [0]

        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
        def fuzz(case):
            count[0] += 1
            if token == "none":
                case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
            response = case.call(headers=headers, timeout=60)
            # Schema-invalid requests must be refused (4xx) whoever asks.
            case.validate_response(response, checks=CHECKS + ([negative_data_rejection] if mode == "negative" else []))

        try:
            fuzz()
        except Unsatisfiable:
            assert mode == "negative"  # nothing to make invalid (no parameters, no body): GET /ping
        TRIED[(operation.label, token, mode)] = count[0]
    print("schemathesis %s cases with token %s: %d"
          % (mode, token, sum(v for (_ignored, t, m), v in TRIED.items() if (t, m) == (token, mode))))


def test_fuzz_delete_with_admin_token(live):
    inst, schema = live
    operation = schema["/keys/{key}"]["DELETE"]
    count = [0]

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def fuzz(case):
        count[0] += 1
        response = case.call(headers={"Authorization": "Bearer " + inst.tokens["admin"]}, timeout=60)
        case.validate_response(response, checks=CHECKS)

    fuzz()
    # The fuzz targets are still there unless the fuzzer named them exactly; the service answers.
    status, _ignored, _ignored = inst.request("GET", "/health/ready", token=None)
    assert status == 200
