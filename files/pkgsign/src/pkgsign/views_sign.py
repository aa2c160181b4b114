"""Remote signing: POST /sign, and ``finish_and_sign``, the core POST /sign and the Blind Oracle
(oracle.py) both sign through."""

import logging
import time
from binascii import b2a_base64

from flask import Blueprint, g, jsonify

from . import hashstate
from .agent import AgentError
from .budget import BudgetExceeded
from .keystore import UnknownKey
from .openpgp import build_hashed_area, signature_packets
from .web import ApiError, audit, authorize_key, check_body, digest_algo_of, json_body, requires, resolve, service
from .wire import SIG_TYPES, armor, trailer

log = logging.getLogger("pkgsign")

signing = Blueprint("signing", __name__)

# What clients older than server-finished hashing sent: refused with a message saying so.
OLD_CLIENT_FIELDS = {"digests", "hashed_area"}
GPG_ERR_NO_SECKEY = 17


@signing.route("/sign", methods=["POST"])
@requires("sign")
def sign():
    """Finish the hash of each state with a hashed area made here, and sign the digests.

    The client sends where its hash stands after the data (hashstate.py), never a digest:
    the last bytes hashed are always this server's hashed area (a binary or text signature,
    created now, by the signing key) and the v4 trailer, so a signature made here verifies
    only as a data signature of that type and time (README.md, "Why the signer is no oracle")."""
    body = json_body()
    name = body.get("key")
    record = resolve(name)
    try:
        authorize_key(record, name)
    except ApiError:
        audit("sign", "denied", key=name, fingerprint=record["fingerprint"])
        raise
    if body.keys() & OLD_CLIENT_FIELDS:
        raise ApiError(400, "digests are no longer signed: send the hash states of the data "
                            "(\"states\"; this client is older than the server)")
    check_body("SignRequest", body)  # fields, types, digests, sig_type, max_digests_per_request
    digest_algo = digest_algo_of(body)
    sig_type = body.get("sig_type", "binary")
    want_armor = body.get("armor", False)
    items = body["states"]
    try:
        states = [hashstate.parse_state(digest_algo, item, index) for index, item in enumerate(items)]
    except hashstate.StateError as err:
        raise ApiError(400, str(err))
    now, digests, packets = finish_and_sign(record, name, digest_algo, sig_type, states, "sign")
    results = []
    for digest, packet in zip(digests, packets):
        item = {"digest": digest, "signature": b2a_base64(packet, newline=False).decode("ascii")}
        if want_armor:
            item["armored"] = armor(packet)
        results.append(item)
    audit("sign", "ok", key=name, fingerprint=record["signing_fingerprint"], digest_algo=digest_algo,
          sig_type=sig_type, created=now, digests=digests)
    return jsonify(key=name, fingerprint=record["fingerprint"], signing_fingerprint=record["signing_fingerprint"],
                   key_id=record["signing_key_id"], pubkey_algo=record["pubkey_algo"], digest_algo=digest_algo,
                   sig_type=sig_type, creation_time=now, signatures=results)


def finish_and_sign(record, name, digest_algo, sig_type, states, operation):
    """Charge the token's budget, build the hashed area here, finish every state with it and
    sign the digests; (creation time, digests, signature packets). POST /sign and the Blind
    Oracle endpoints (oracle.py) both sign through this.

    ``record`` is first brought up to the keyring (KeyStore.current, in place, so the caller
    answers with the signing subkey actually used): a subkey revoked, expired or replaced by
    hand counts from the next request on. After authorisation: no gpg run for a refused key."""
    svc = service()
    try:
        record.update(svc.keys.current(record))
    except UnknownKey:
        raise ApiError(404, "unknown key: %s" % name)
    _check_usable(record, name)
    try:
        svc.budgets.charge_signatures(g.token.id, len(states))  # [budget] signatures: one per state
    except BudgetExceeded as err:
        audit(operation, "refused", key=name, status=err.status, reason=err.message)
        raise ApiError(err.status, err.message, {"Retry-After": str(err.retry_after)})
    now = int(time.time())
    area = build_hashed_area(SIG_TYPES[sig_type], record["pubkey_algo"], digest_algo,
                             record["signing_fingerprint"], now)
    suffix = area + trailer(area)
    digests = [hashstate.finish(state, suffix).hex() for state in states]
    passphrase = svc.keys.passphrase_for(record)
    try:
        # All digests of the request on one agent connection, pipelined (agent.py).
        sexps = svc.agent.sign_many(record["signing_keygrip"], digest_algo, digests, passphrase)
        packets = signature_packets(area, record["signing_key_id"], record["pubkey_algo"], digests, sexps)
    except (AgentError, ValueError) as err:
        if _no_secret_key(err):  # deleted (or its secret moved away) since it was looked up
            log.warning("signing with %s: gpg-agent has no secret for it: %s", record["fingerprint"], err)
            raise ApiError(409, "key %s has no secret key on this server (deleted?)" % name)
        log.error("signing with %s failed: %s", record["fingerprint"], err)
        audit(operation, "error", key=name, fingerprint=record["signing_fingerprint"], digest_algo=digest_algo,
              sig_type=sig_type, created=now, digests=digests)
        raise ApiError(500, "gpg-agent could not sign with %s" % name)
    return now, digests, packets


def _check_usable(record, name):
    if record.get("signing_problem"):
        # Never a certify-only primary or a subkey without its secret here (keystore.signing_part).
        raise ApiError(409, "key %s cannot sign: %s" % (name, record["signing_problem"]))
    if record.get("revoked"):
        raise ApiError(409, "key %s is revoked" % name)
    expires = record.get("expires")
    if expires and expires <= time.time():
        raise ApiError(409, "key %s has expired; prolong it (pkgsign-admin maintain)" % name)


def _no_secret_key(err):
    """True for gpg-agent's 'ERR <code> No secret key' (the error code is the low 16 bits)."""
    words = str(err).split()
    return isinstance(err, AgentError) and len(words) > 1 and words[0] == "ERR" and words[1].isdigit() \
        and int(words[1]) & 0xFFFF == GPG_ERR_NO_SECKEY
