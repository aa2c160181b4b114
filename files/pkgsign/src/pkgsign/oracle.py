"""The Blind Oracle API (README.md, "Blind Oracle API"): ``POST /sign/rpm``, ``POST /sign/repodata``
and ``GET /health``, with the request and response fields of the Blind Oracle design document, on
top of the service's own server-finished signing (``views_sign.finish_and_sign``).

What the document's ``package_hash`` / ``repodata_hash`` carry here: the *hash state* of the data
(``hashstate.py``: chaining value, byte count, unhashed tail), as ``POST /sign`` takes it, never a
finished digest. An OpenPGP signature does not sign the file's digest: it signs
``H(data || hashed_area || trailer)``, and the hashed area (signature type, creation time, the
signing key) must be chosen by the key holder; a bare ``sha256:<hex>`` of the file cannot be
extended by it, so a signer taking one would have to sign whatever digest it is sent (an oracle for
any statement, key certifications included). The document's string form ``sha256:...`` is refused
with a 400 that says what to send instead.

For ``/sign/rpm`` the data is the RPM's main header (what rpm's header signature covers, and what
``sign -r`` hashes); for ``/sign/repodata`` it is ``repomd.xml`` as a binary document (what dnf
checks with ``repomd.xml.asc``). Both make a binary (0x00) signature.

The key comes from the ``[oracle]`` table of pkgsign.conf (``DISTRIBUTION/KEY_TYPE = KEY``), never
from a name in the request: ``distribution`` and ``key_type`` only pick a row, and the token must
still be allowed to use the key the row names, by the key's own names (its email, fingerprint, key
id, aliases); a distribution is not a name a token pattern can match.
"""

import datetime
import re

from flask import Blueprint, g, jsonify, request

from . import __version__, hashstate
from .config import ORACLE_DEFAULT_DISTRIBUTION as DEFAULT_DISTRIBUTION, ascii_lower
from .views_sign import finish_and_sign
from .web import ApiError, audit, authorize_key, check_body, digest_algo_of, json_body, operation, requires, resolve, \
    service
from .wire import armor

# The bodies' fields and limits are their schemas in openapi.json (tools/openapi.py, from config.py's
# ORACLE_*: the [oracle] table is read with the same limits), checked by web.check_body.
BARE_DIGEST = re.compile(r"^\s*(sha1|sha224|sha256|sha384|sha512)\s*:", re.IGNORECASE)

oracle = Blueprint("oracle", __name__)


def token_in_body():
    """Reads the body (into g.body) and takes the token out of it: the token comes from the body or
    the Authorization header, not both (which one would count?). None: use the header."""
    body = g.body = json_body(any_type=True)
    in_body = body.pop("token", None)
    if in_body is None:
        return None
    if not isinstance(in_body, str) or not in_body.strip():
        raise ApiError(400, "token must be a non-empty string")
    if request.headers.get("Authorization"):
        raise ApiError(400, "send the token in the body or in the Authorization header, not both")
    return in_body.strip()


@oracle.route("/sign/rpm", methods=["POST"], endpoint="oracle_sign_rpm")
@requires("sign", secret=token_in_body)
def sign_rpm():
    """The signature of an RPM header: package_hash is the hash state of the package's main header."""
    return _sign_one("package's main header", "package_hash", "OracleRpmRequest")


@oracle.route("/sign/repodata", methods=["POST"], endpoint="oracle_sign_repodata")
@requires("sign", secret=token_in_body)
def sign_repodata():
    """A detached signature of repomd.xml: repodata_hash is the hash state of the file."""
    return _sign_one("repomd.xml", "repodata_hash", "OracleRepodataRequest")


@oracle.route("/health", endpoint="oracle_health")
def health():
    """The Blind Oracle's health probe: public, and as cheap as /health/live (no gpg run)."""
    return jsonify(status="ok", version=__version__)


def _choose(body):
    """(distribution, key_type, key name) of the [oracle] row a checked body picks (a /sign/repodata
    body without a distribution: the default one)."""
    table = service().config.oracle_keys
    key_types = sorted({key_type for _distribution, key_type in table})
    distribution = body.get("distribution")
    if distribution is None:
        distribution = DEFAULT_DISTRIBUTION
    key_type = body["key_type"]
    if ascii_lower(key_type) not in key_types:
        raise ApiError(400, "unknown key_type %s (this service has: %s)" % (key_type, ", ".join(key_types) or "none"))
    key = table.get((ascii_lower(distribution), ascii_lower(key_type)))
    if key is None:
        raise ApiError(400, "no %s key for distribution %s" % (key_type, distribution))
    return distribution, key_type, key


def _sign_one(kind, hash_field, schema_name):
    body = g.body
    value = body.get(hash_field)
    if isinstance(value, str) and BARE_DIGEST.match(value):
        raise ApiError(400, "%s: a digest of the file cannot be signed (the signature covers a hashed area this "
                            "server builds after the data); send the hash state of the %s "
                            "{chaining_value, byte_count, tail} (README.md, Blind Oracle API)" % (hash_field, kind))
    check_body(schema_name, body)
    distribution, key_type, name = _choose(body)
    record = resolve(name)
    try:
        authorize_key(record, name)
    except ApiError:
        audit(operation(), "denied", key=name, fingerprint=record["fingerprint"], distribution=distribution,
              key_type=key_type)
        raise
    digest_algo = digest_algo_of(body)
    try:
        state = hashstate.parse_state(digest_algo, value)
    except hashstate.StateError as err:
        raise ApiError(400, "%s: %s" % (hash_field, err))
    now, digests, packets = finish_and_sign(record, name, digest_algo, "binary", [state], operation())
    key_id = record["signing_key_id"].upper()
    audit(operation(), "ok", key=name, fingerprint=record["signing_fingerprint"], distribution=distribution,
          key_type=key_type, digest_algo=digest_algo, sig_type="binary", created=now, digests=digests)
    return jsonify(signature=armor(packets[0]), key_id=key_id, timestamp=_timestamp(now),
                   fingerprint=record["signing_fingerprint"], digest=digests[0], digest_algo=digest_algo)


def _timestamp(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
