"""Writes src/pkgsign/openapi.json (run: python3 tools/openapi.py > src/pkgsign/openapi.json).

The document is generated from this script so that its many repeated parts stay consistent;
tests/test_units.py checks that the shipped file matches.
"""
import json

err = {"$ref": "#/components/responses/Error"}


def resp(desc, schema=None, ctype="application/json"):
    r = {"description": desc}
    if schema is not None:
        r["content"] = {ctype: {"schema": schema}}
    return r


auth_errors = {"401": {"$ref": "#/components/responses/Unauthorized"}, "403": err, "429": {"$ref": "#/components/responses/RateLimited"}}
KEY = {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[^\\x00-\\x1f\\x7f]+$"}
UID = "[^\\s<>()\\x00-\\x1f\\x7f](?:[^<>()\\x00-\\x1f\\x7f]*[^\\s<>()\\x00-\\x1f\\x7f])?"
key_param = {"name": "key", "in": "path", "required": True, "schema": KEY,
             "description": "name_email, fingerprint, key id or alias from the [aliases] section"}
spec = {
    "openapi": "3.0.3",
    "info": {
        "title": "pkgsign", "version": "0.1.0",
        "description": "copr-keygen compatible key service and blind remote OpenPGP v4 signer. "
                       "Every request except /ping, /health/* and /openapi.json carries 'Authorization: Bearer <token>'. "
                       "Signing: POST /sign/prepare returns the hashed area of a v4 signature; the client computes "
                       "H(data || hashed_area || 0x04 0xFF || len32(hashed_area)) and sends only that digest to POST /sign."},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            "GenKeyRequest": {
                "type": "object", "required": ["name_real", "name_email"], "additionalProperties": False,
                "properties": {
                    "name_real": {
                        "type": "string", "minLength": 1, "maxLength": 256, "pattern": "^" + UID + "$",
                        "description": "key owner name (no control characters, <, >, (, ))"},
                    "name_email": {
                        "type": "string", "minLength": 3, "maxLength": 256,
                        "pattern": "^[A-Za-z0-9._+-]+(#[A-Za-z0-9._+-]+)?@[A-Za-z0-9.-]+$",
                        "description": "user#project@domain; one key per name_email"},
                    "name_comment": {"type": "string", "nullable": True, "maxLength": 256, "pattern": "^(" + UID + ")?$"},
                    # null and "" mean "the default", as in copr-keygen's form posts.
                    "key_length": {"nullable": True,
                                   "oneOf": [{"type": "integer", "enum": [2048, 3072, 4096]},
                                             {"type": "string", "enum": ["", "2048", "3072", "4096"]}]},
                    "expire": {
                        "nullable": True,
                        "oneOf": [{"type": "integer", "minimum": 0, "maximum": 36500},
                                  {"type": "string",
                                   "pattern": "^(|0|[1-9][0-9]{0,3}|[12][0-9]{4}|3[0-5][0-9]{3}|36[0-4][0-9]{2}|36500)$"}],
                        "description": "days, 0 = never"},
                    "algorithm": {"type": "string", "nullable": True,
                                  "enum": ["rsa2048", "rsa3072", "rsa4096", "ed25519", None]}}},
            "GenKeyResponse": {
                "type": "object", "required": ["name_email", "fingerprint", "algorithm", "created"],
                "properties": {"name_email": {"type": "string"}, "fingerprint": {"type": "string"},
                               "algorithm": {"type": "string"}, "created": {"type": "boolean"}}},
            "KeyInfo": {
                "type": "object", "required": ["fingerprint", "key_id", "signing_fingerprint", "signing_key_id", "pubkey_algo"],
                "properties": {
                    "name_email": {"type": "string"}, "uids": {"type": "array", "items": {"type": "string"}},
                    "fingerprint": {"type": "string"}, "key_id": {"type": "string"}, "algorithm": {"type": "string"},
                    "created": {"type": "integer", "nullable": True}, "expires": {"type": "integer", "nullable": True},
                    "signing_fingerprint": {"type": "string"}, "signing_key_id": {"type": "string"},
                    "pubkey_algo": {"type": "integer"}, "signing_algorithm": {"type": "string"}, "origin": {"type": "string"}}},
            "PrepareRequest": {
                "type": "object", "required": ["key"], "properties": {
                    "key": KEY,
                    "digest_algo": {"type": "string", "enum": ["sha256", "sha384", "sha512", "sha1"], "default": "sha256",
                                    "description": "sha1 only when the server's allow_sha1 is on"},
                    "sig_type": {"type": "string", "enum": ["binary", "text"], "default": "binary"}}},
            "PrepareResponse": {
                "type": "object",
                "required": ["hashed_area", "digest_algo", "fingerprint", "signing_fingerprint", "key_id", "pubkey_algo",
                             "creation_time", "valid_for"],
                "properties": {
                    "key": {"type": "string"}, "fingerprint": {"type": "string"}, "signing_fingerprint": {"type": "string"},
                    "key_id": {"type": "string"}, "pubkey_algo": {"type": "integer"}, "digest_algo": {"type": "string"},
                    "sig_type": {"type": "string"}, "creation_time": {"type": "integer"},
                    "hashed_area": {
                        "type": "string", "pattern": "^[0-9a-f]+$",
                        "description": "hex: 04 | sig type | pubkey algo | hash algo | len16 | subpackets (creation time, issuer fingerprint)"},
                    "valid_for": {"type": "integer", "description": "seconds the creation time stays acceptable"}}},
            "SignRequest": {
                "type": "object", "required": ["key", "hashed_area", "digests"], "properties": {
                    "key": KEY,
                    "digest_algo": {"type": "string", "enum": ["sha256", "sha384", "sha512", "sha1"], "default": "sha256"},
                    "hashed_area": {"type": "string", "pattern": "^([0-9a-fA-F]{2})+$", "maxLength": 512,
                                    "description": "exactly as /sign/prepare returned it"},
                    "digests": {
                        "type": "array", "minItems": 1, "maxItems": 1000,
                        "items": {"type": "string",
                                  "pattern": "^([0-9a-fA-F]{40}|[0-9a-fA-F]{56}|[0-9a-fA-F]{64}|[0-9a-fA-F]{96}|[0-9a-fA-F]{128})$"},
                        "description": "hex digests of data || hashed_area || 04 FF || len32(hashed_area)"},
                    "armor": {"type": "boolean", "default": False, "description": "also return ASCII-armored signatures"}}},
            "SignResponse": {
                "type": "object", "required": ["signatures", "fingerprint", "key_id", "digest_algo"], "properties": {
                    "key": {"type": "string"}, "fingerprint": {"type": "string"}, "signing_fingerprint": {"type": "string"},
                    "key_id": {"type": "string"}, "digest_algo": {"type": "string"},
                    "signatures": {"type": "array", "items": {"type": "object", "required": ["digest", "signature"], "properties": {
                        "digest": {"type": "string"},
                        "signature": {"type": "string", "format": "byte", "description": "base64 of the binary OpenPGP signature packet"},
                        "armored": {"type": "string"}}}}}},
        },
        "responses": {
            "Error": {"description": "error with a message",
                      "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            "Unauthorized": {"description": "no, invalid or revoked token", "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            "RateLimited": {"description": "the token's rate limit is exceeded", "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        }},
    "security": [{"bearer": []}],
    "paths": {
        "/ping": {"get": {"summary": "liveness (copr-keygen)", "security": [],
                          "responses": {"200": resp("pong", {"type": "string"}, "text/plain")}}},
        "/health/live": {"get": {
            "summary": "the process answers", "security": [],
            "responses": {"200": resp("live", {"type": "object", "properties": {"status": {"type": "string"}, "version": {"type": "string"}}})}}},
        "/health/ready": {"get": {"summary": "keyring, gpg-agent and state directory usable", "security": [], "responses": {
            "200": resp("ready", {"type": "object", "properties": {
                "ready": {"type": "boolean"}, "checks": {"type": "object", "additionalProperties": {"type": "boolean"}}}}),
            "503": resp("not ready", {"type": "object", "properties": {
                "ready": {"type": "boolean"}, "checks": {"type": "object", "additionalProperties": {"type": "boolean"}}}})}}},
        "/openapi.json": {"get": {"summary": "this document", "security": [],
                                  "responses": {"200": resp("OpenAPI document", {"type": "object"})}}},
        "/whoami": {"get": {
            "summary": "the calling token's name, scopes and key patterns (what sign -t shows); any scope",
            "responses": dict({"200": resp("the token", {
                "type": "object", "required": ["token", "scopes", "keys"], "properties": {
                    "token": {"type": "string"}, "scopes": {"type": "array", "items": {"type": "string"}},
                    "keys": {"type": "array", "items": {"type": "string"}}}})}, **auth_errors)}},
        "/gen_key": {"post": {
            "summary": "create the key of name_email unless it exists (copr-keygen); scope keygen",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/GenKeyRequest"}},
                "application/x-www-form-urlencoded": {"schema": {"$ref": "#/components/schemas/GenKeyRequest"}}}},
            "responses": dict({"201": resp("created", {"$ref": "#/components/schemas/GenKeyResponse"}),
                               "200": resp("already exists", {"$ref": "#/components/schemas/GenKeyResponse"}),
                               "400": err, "413": err, "500": err}, **auth_errors)}},
        "/pubkey/{key}": {"get": {
            "summary": "armored public key; any scope, key pattern must match", "parameters": [key_param],
            "responses": dict({"200": resp("armored public key", {"type": "string"}, "application/pgp-keys"),
                               "400": err, "404": err}, **auth_errors)}},
        "/keys/{key}": {
            "get": {"summary": "key metadata; any scope", "parameters": [key_param],
                    "responses": dict({"200": resp("key", {"$ref": "#/components/schemas/KeyInfo"}), "400": err, "404": err}, **auth_errors)},
            "delete": {
                "summary": "delete a per-project key; scope admin", "parameters": [key_param],
                "responses": dict({"200": resp("deleted", {"type": "object", "properties": {"deleted": {"type": "string"}, "fingerprint": {"type": "string"}}}),
                                   "400": err, "404": err, "500": err}, **auth_errors)}},
        "/sign/prepare": {"post": {
            "summary": "hashed area of a v4 signature by key; scope sign",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PrepareRequest"}}}},
            "responses": dict({"200": resp("hashed area", {"$ref": "#/components/schemas/PrepareResponse"}),
                               "400": err, "404": err, "409": err, "413": err}, **auth_errors)}},
        "/sign": {"post": {
            "summary": "sign digests with gpg-agent; scope sign",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SignRequest"}}}},
            "responses": dict({"200": resp("signature packets", {"$ref": "#/components/schemas/SignResponse"}),
                               "400": err, "404": err, "409": err, "413": err, "500": err}, **auth_errors)}},
    }}
print(json.dumps(spec, indent=1))
