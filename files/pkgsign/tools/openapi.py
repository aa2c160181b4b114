"""Writes src/pkgsign/openapi.json (run: python3 tools/openapi.py > src/pkgsign/openapi.json).

The document is generated from this script so that its many repeated parts stay consistent;
tests/test_units.py checks that the shipped file matches.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))
# The limits below come from the code that enforces them (one source).
# The service fills in its instance's limits (schema.py): these are the defaults.
from pkgsign.config import (DEFAULT_EMAIL_PATTERN, DEFAULT_MAX_DIGESTS, KEYGEN_ALGORITHMS, MAX_KEY_NAME,  # noqa: E402
                            ORACLE_DEFAULT_DISTRIBUTION, ORACLE_MAX_NAME, ORACLE_NAME_PATTERN)

err = {"$ref": "#/components/responses/Error"}


def resp(desc, schema=None, ctype="application/json"):
    r = {"description": desc}
    if schema is not None:
        r["content"] = {ctype: {"schema": schema}}
    return r


auth_errors = {"401": {"$ref": "#/components/responses/Unauthorized"}, "403": err, "429": {"$ref": "#/components/responses/RateLimited"}}
KEY = {"type": "string", "minLength": 1, "maxLength": MAX_KEY_NAME, "pattern": "^[^\\x00-\\x1f\\x7f]+$"}
UID = "[^\\s<>()\\x00-\\x1f\\x7f](?:[^<>()\\x00-\\x1f\\x7f]*[^\\s<>()\\x00-\\x1f\\x7f])?"
SIGNATURE = {"type": "object", "required": ["digest", "signature"], "properties": {
    "digest": {"type": "string", "description": "hex of the finished hash the key signed (as in the audit log)"},
    "signature": {"type": "string", "format": "byte", "description": "base64 of the binary OpenPGP signature packet"},
    "armored": {"type": "string"}}}
ORACLE_NAME = {"type": "string", "maxLength": ORACLE_MAX_NAME, "pattern": ORACLE_NAME_PATTERN,
               "description": "picks a row of the [oracle] table of pkgsign.conf (DISTRIBUTION/KEY_TYPE = KEY), case-insensitive"}
ORACLE_TOKEN = {"type": "string", "minLength": 1,
                "description": "the API token, when it is not in the Authorization header (never both)"}
DIGEST_ALGO = {"type": "string", "enum": ["sha256", "sha384", "sha512"], "default": "sha256"}
key_param = {"name": "key", "in": "path", "required": True, "schema": KEY,
             "description": "name_email, fingerprint, key id or alias from the [aliases] section"}
spec = {
    "openapi": "3.0.3",
    "info": {
        "title": "pkgsign", "version": "0.1.0",
        "description": "copr-keygen compatible key service and blind remote OpenPGP v4 signer. "
                       "Every request except /ping, /health/* and /openapi.json carries 'Authorization: Bearer <token>'. "
                       "Signing: the client hashes each file and sends the hash state after the data (chaining value, byte count, "
                       "last partial block) to POST /sign; the server appends the hashed area of a v4 signature, which it builds "
                       "itself (type binary or text, its own creation time, the signing key's fingerprint), and the trailer "
                       "04 FF len32(hashed_area), finishes the hash and signs it. The client never sends a digest."},
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
                        # What every name_email pattern leaves possible; the instance's pattern decides.
                        "pattern": "^[^\\s<>()\\x00-\\x1f\\x7f]*@[^\\s<>()\\x00-\\x1f\\x7f]*$",
                        "description": "must match the instance's [keygen] name_email_pattern (Python re); the "
                                       "default, " + DEFAULT_EMAIL_PATTERN + ", takes every name copr-keygen's "
                                       "validate_name_email takes: leading @s (a Copr group), an owner of Unicode word "
                                       "characters, '.' and '-', '#', such characters around exactly one '@' "
                                       "(user#project@domain, @group#project@domain, caf\u00e9#p@domain), or a plain "
                                       "ASCII address; less what no user id may hold (control, format and bidi "
                                       "characters, white space, <>() and their look-alikes). Case is kept, nothing "
                                       "is normalised; one key per name_email compared without ASCII (A-Z) case"},
                    "name_comment": {"type": "string", "nullable": True, "maxLength": 256, "pattern": "^(" + UID + ")?$"},
                    # null and "" mean "the default", as in copr-keygen's form posts.
                    "key_length": {"nullable": True,
                                   "oneOf": [{"type": "integer", "enum": [2048, 3072, 4096]},
                                             {"type": "string", "enum": ["", "2048", "3072", "4096"]}]},
                    "expire": {
                        "nullable": True,
                        "oneOf": [{"type": "integer", "minimum": 0, "maximum": 36500},
                                  {"type": "string",
                                   "pattern": "^(|0|never|none|[0-9]{1,5}|[1-9][0-9]{0,5}[dwmyDWMY]|[0-9]{4}-[0-9]{2}-[0-9]{2})$"}],
                        "description": "gpg's Expire-Date forms, as copr-keygen passes them: days, 0 = never, <n>d|w|m|y "
                                       "(m = 30 days, y = 365 days; copr-keygen's default is 5y) or YYYY-MM-DD; at most "
                                       "36500 days and not after 2106-02-07"},
                    "algorithm": {"type": "string", "nullable": True,
                                  "enum": list(KEYGEN_ALGORITHMS) + [None]}}},
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
            "HashState": {
                "type": "object", "required": ["chaining_value", "byte_count", "tail"], "additionalProperties": False,
                "description": "where the client's hash of one file stands after the file's bytes (pkgsign/hashstate.py); "
                               "the server appends its hashed area and the v4 trailer and finishes the hash",
                "properties": {
                    "chaining_value": {
                        "type": "string", "pattern": "^([0-9a-fA-F]{64}|[0-9a-fA-F]{128})$",
                        "description": "the internal state words, big-endian, in hex: 32 bytes for sha256 (and sha224), "
                                       "64 bytes for sha384 and sha512 (the whole state, not the truncated digest)"},
                    "byte_count": {"type": "integer", "minimum": 0, "maximum": 2 ** 60,
                                   "description": "bytes hashed so far, the tail included"},
                    "tail": {"type": "string", "pattern": "^([0-9a-fA-F]{2}){0,127}$",
                             "description": "hex of the last byte_count mod block-size bytes (block: 64 bytes for sha256, "
                                            "128 for sha384/sha512), not yet compressed"}}},
            "SignRequest": {
                "type": "object", "required": ["key", "states"], "additionalProperties": False, "properties": {
                    "key": KEY,
                    "digest_algo": {"type": "string", "enum": ["sha256", "sha384", "sha512"], "default": "sha256",
                                    "description": "the hash of the states and of the signature (one of the server's allowed_digests)"},
                    "sig_type": {"type": "string", "enum": ["binary", "text"], "default": "binary",
                                 "description": "OpenPGP signature type 0x00 or 0x01 (text: the client hashed canonical CRLF text)"},
                    "states": {"type": "array", "minItems": 1, "maxItems": DEFAULT_MAX_DIGESTS,
                               "items": {"$ref": "#/components/schemas/HashState"},
                               "description": "one hash state per file; at most max_digests_per_request (%d by default; "
                                              "an instance's /openapi.json has its own)" % DEFAULT_MAX_DIGESTS},
                    "armor": {"type": "boolean", "default": False, "description": "also return ASCII-armored signatures"}}},
            "SignResponse": {
                "type": "object",
                "required": ["signatures", "fingerprint", "signing_fingerprint", "key_id", "pubkey_algo", "digest_algo",
                             "sig_type", "creation_time"],
                "properties": {
                    "key": {"type": "string"}, "fingerprint": {"type": "string"}, "signing_fingerprint": {"type": "string"},
                    "key_id": {"type": "string", "description": "key id of the signing (sub)key"},
                    "pubkey_algo": {"type": "integer"}, "digest_algo": {"type": "string"},
                    "sig_type": {"type": "string"},
                    "creation_time": {"type": "integer", "description": "the server's clock when it signed: the signatures' creation time"},
                    "signatures": {"type": "array", "description": "in the order of the states", "items": SIGNATURE}}},
            "OracleRpmRequest": {
                "type": "object", "required": ["package_hash", "distribution", "key_type"], "additionalProperties": False,
                "properties": {
                    "package_hash": {"$ref": "#/components/schemas/HashState",
                                     "description": "the hash state of the RPM's main header (what rpm's header signature "
                                                    "covers); a bare 'sha256:<hex>' is refused (README.md, Blind Oracle API)"},
                    "distribution": ORACLE_NAME, "key_type": ORACLE_NAME, "token": ORACLE_TOKEN, "digest_algo": DIGEST_ALGO}},
            "OracleRepodataRequest": {
                "type": "object", "required": ["repodata_hash", "key_type"], "additionalProperties": False,
                "properties": {
                    "repodata_hash": {"$ref": "#/components/schemas/HashState",
                                      "description": "the hash state of repomd.xml"},
                    "distribution": dict(ORACLE_NAME, default=ORACLE_DEFAULT_DISTRIBUTION, nullable=True),
                    "key_type": ORACLE_NAME, "token": ORACLE_TOKEN, "digest_algo": DIGEST_ALGO}},
            "OracleResponse": {
                "type": "object", "required": ["signature", "key_id", "timestamp"], "properties": {
                    "signature": {"type": "string", "description": "ASCII-armored OpenPGP v4 binary signature"},
                    "key_id": {"type": "string", "pattern": "^[0-9A-F]{16}$", "description": "key id of the signing subkey"},
                    "timestamp": {"type": "string", "format": "date-time", "description": "the signature's creation time (UTC)"},
                    "fingerprint": {"type": "string"}, "digest": {"type": "string"}, "digest_algo": {"type": "string"}}},
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
        "/sign": {"post": {
            "summary": "finish each hash state with the server's hashed area (binary or text signature, created now, "
                       "by the signing key) and sign it with gpg-agent; scope sign",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SignRequest"}}}},
            "responses": dict({"200": resp("signature packets", {"$ref": "#/components/schemas/SignResponse"}),
                               "400": err, "404": err, "409": err, "413": err, "500": err}, **auth_errors)}},
        "/health": {"get": {"summary": "Blind Oracle health probe (no gpg run)", "security": [],
                            "responses": {"200": resp("ok", {"type": "object", "properties": {
                                "status": {"type": "string"}, "version": {"type": "string"}}})}}},
        "/sign/rpm": {"post": {
            "summary": "Blind Oracle: sign an RPM header with the key of (distribution, key_type); scope sign, the token "
                       "must be allowed the key the row names; token in the body or the Authorization header",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OracleRpmRequest"}}}},
            "responses": dict({"200": resp("signature", {"$ref": "#/components/schemas/OracleResponse"}),
                               "400": err, "404": err, "409": err, "413": err, "500": err}, **auth_errors)}},
        "/sign/repodata": {"post": {
            "summary": "Blind Oracle: detached signature of repomd.xml with the key of (distribution or 'default', "
                       "key_type); scope sign",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OracleRepodataRequest"}}}},
            "responses": dict({"200": resp("signature", {"$ref": "#/components/schemas/OracleResponse"}),
                               "400": err, "404": err, "409": err, "413": err, "500": err}, **auth_errors)}},
    }}
print(json.dumps(spec, indent=1))
