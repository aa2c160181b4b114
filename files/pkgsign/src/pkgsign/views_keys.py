"""The copr-keygen compatible key views: POST /gen_key, GET /pubkey/<key>, GET and DELETE /keys/<key>."""

import functools
import logging
import time

from flask import Blueprint, Response, g, jsonify, request

from . import _gnupg
from .budget import BudgetExceeded, QuotaExceeded
from .config import ascii_lower
from .keystore import GenerationCancelled, KeyStoreError, NotOurKey, UnknownKey
from .tokens import TokenFileError
from .web import ApiError, audit, authorize_key, check_body, client_address, encodable, json_body, refused, requires, \
    resolve, service

log = logging.getLogger("pkgsign")

keys = Blueprint("keys", __name__)


def holds_keygen_worker(view):
    """The whole request holds a worker (queue, slot, generation): bounded per process (budget.py)."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        budgets = service().budgets
        try:
            budgets.take_keygen_worker()
        except BudgetExceeded as err:
            refused(err)
        try:
            return view(*args, **kwargs)
        finally:
            budgets.free_keygen_worker()
    return wrapper


@keys.route("/gen_key", methods=["POST"])
@holds_keygen_worker
@requires("keygen", anonymous_ok=True, queue=True)
def gen_key():
    svc = service()
    token = g.token
    body = _gen_key_body()
    # The key store's own check (shared with pkgsign-admin) words a bad value best; the schema
    # answers for unknown fields and anything that check lets through.
    check_body("GenKeyRequest", body, explain=lambda: _validated_request(body))
    algorithm, days = _validated_request(body)
    email = body["name_email"]  # as given: case is kept, lookups fold it (README.md, "name_email")
    if token is not None and not token.allows_key({ascii_lower(email)}):
        audit("gen_key", "denied", key=email)
        raise ApiError(403, "token %s may not create key %s" % (token.id, email))
    reserved = _reserve_key(svc.budgets, svc.keys, token, email)  # the token's key quota (403)
    try:
        slot = _admit_keygen(svc.budgets, svc.keys, token, client_address(), email, algorithm)
    except ApiError:
        svc.budgets.return_key(reserved)
        raise
    started = time.monotonic()
    created = False
    try:
        created, record = svc.keys.generate(body["name_real"], email, body.get("name_comment"),
                                            algorithm, days, created_by=token.id if token else None,
                                            cancelled=request.environ.get("pkgsign.client_gone"))
    except GenerationCancelled:  # nobody waits for the answer; serving.py, docs/security.md
        audit("gen_key", "cancelled", key=email, reason="the client closed its connection")
        raise ApiError(503, "key generation cancelled: the client went away")
    except _gnupg.InvalidInput as err:
        raise ApiError(400, str(err))
    except NotOurKey as err:  # audited as a refusal (409) by audit_refusal
        raise ApiError(409, str(err))
    except (_gnupg.GpgError, KeyStoreError) as err:
        log.error("key generation for %s failed: %s", email, getattr(err, "stderr", "") or err)
        audit("gen_key", "error", key=email)
        raise ApiError(500, "key generation failed: %s" % getattr(err, "message", err))
    finally:
        svc.budgets.release(slot)
        if not created:
            svc.budgets.return_key(reserved)
    granted = created and token is not None and token.pins_keys and _grant_made_key(svc.config, token, record)
    audit("gen_key", "created" if created else "exists", key=email, fingerprint=record["fingerprint"],
          **({"granted": token.id} if granted else {}))
    if created:
        log.info("generated %s key %s for %s in %.2f s", algorithm, record["fingerprint"], email,
                 time.monotonic() - started)
    # The key's own spelling: a second call in another case answers with the first one's.
    response = jsonify(name_email=record.get("name_email") or email, fingerprint=record["fingerprint"],
                       algorithm=record["algorithm"], created=created)
    response.status_code = 201 if created else 200
    return response


@keys.route("/pubkey/<path:name>")
@requires(None)
def pubkey(name):
    record = resolve(name)
    authorize_key(record, name)
    svc = service()
    try:
        with svc.keys.keyring_lock():
            data = svc.keys.public_key(record)
    except _gnupg.KeyNotFound:
        raise ApiError(404, "unknown key: %s" % name)
    return Response(data, content_type="application/pgp-keys")


@keys.route("/keys/<path:name>", methods=["GET"])
@requires(None)
def key_info(name):
    record = resolve(name)
    authorize_key(record, name)
    return jsonify(_public_record(record))


@keys.route("/keys/<path:name>", methods=["DELETE"])
@requires("admin")
def delete_key(name):
    svc = service()
    record = resolve(name)
    authorize_key(record, name)
    if not record.get("name_email") or svc.keys.get_metadata(record["name_email"]) is None:
        raise ApiError(400, "key %s is not managed by this service (configured or imported by hand)" % name)
    try:
        deleted = svc.keys.delete(record["name_email"])
    except UnknownKey:
        raise ApiError(404, "unknown key: %s" % name)
    except _gnupg.GpgError as err:
        audit("delete_key", "error", key=record["name_email"], fingerprint=record["fingerprint"])
        raise ApiError(500, "deleting the key failed: %s" % err.message)
    svc.budgets.return_key(deleted.get("created_by"))  # its maker's key quota
    audit("delete_key", "deleted", key=record["name_email"], fingerprint=record["fingerprint"])
    return jsonify(deleted=record["name_email"], fingerprint=record["fingerprint"])


def _gen_key_body():
    if request.is_json or _looks_like_json(request.get_data(cache=True)):
        # copr-keygen reads the body as JSON whatever its Content-Type says.
        return json_body(any_type=True)
    body = request.form.to_dict()
    if not encodable(body):
        raise ApiError(400, "strings must be valid Unicode (no lone surrogates)")
    return body


def _validated_request(body):
    """(algorithm, expire days) of a /gen_key body; 400 with the key store's message."""
    try:
        return service().keys.validate_request(
            body.get("name_real"), body.get("name_email"), body.get("name_comment"),
            body.get("key_length"), body.get("expire"), body.get("algorithm"))
    except _gnupg.InvalidInput as err:
        raise ApiError(400, str(err))


def _public_record(record):
    fields = ("name_email", "uids", "fingerprint", "key_id", "algorithm", "created", "expires",
              "signing_fingerprint", "signing_key_id", "pubkey_algo", "signing_algorithm", "origin")
    return {field: record.get(field) for field in fields}


def _looks_like_json(data):
    """A body whose first non-blank byte opens a JSON object (form bodies never start with "{")."""
    return data.lstrip(b" \t\r\n")[:1] == b"{"


def _reserve_key(budgets, keystore, token, email):
    """One key of the token's quota for a key that does not exist yet (an existing key costs none)."""
    if token is None or keystore.get_metadata(email) is not None:
        return None
    try:
        return budgets.reserve_key(token)
    except QuotaExceeded as err:  # audited as a refusal (403) by audit_refusal
        raise ApiError(403, str(err))


def _admit_keygen(budgets, keystore, token, address, email, algorithm):
    """A new key costs a key generation of the token's budget and, for RSA, a generation slot
    (None when none is needed); 429/503 with Retry-After otherwise (from the keygen queue's
    networks: after waiting in the queue, budget.py). A key that exists costs nothing."""
    if keystore.get_metadata(email) is not None:
        return None
    try:
        budgets.charge_keygen(token.id if token is not None else "addr:" + address, address,
                              lambda wait: audit("gen_key", "queued", key=email, wait=wait))
        return budgets.keygen_slot(algorithm, keystore.pool)
    except BudgetExceeded as err:
        audit("gen_key", "refused", key=email, status=err.status, reason=err.message)
        raise ApiError(err.status, err.message, {"Retry-After": str(err.retry_after)})


def _grant_made_key(config, token, record):
    """A key a token with fingerprint-bound patterns made is granted to it (tokens.py): only a key
    created now, never one that existed (that would widen a token by asking for a known email)."""
    from .tokens import grant_key

    try:
        return grant_key(config.tokens_file, token.id, record["fingerprint"], [record["name_email"]],
                         only_if_pinning=True)
    except (OSError, TokenFileError) as err:
        log.error("granting key %s to token %s failed: %s", record["fingerprint"], token.id, err)
        return False
