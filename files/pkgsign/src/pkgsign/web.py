"""What every blueprint of the HTTP API shares: the per-process Service (``service()``), ApiError and
the error handlers, the audit helpers and the after-request refusal audit, the rate limit, the
``requires`` decorator (authentication and scope), and the request-reading helpers (``json_body``,
``resolve``, ``authorize_key``). The views live in views_meta.py, views_keys.py, views_sign.py and
oracle.py; app.py builds the Service and registers them."""

import functools
import logging
import threading

from flask import Blueprint, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from . import hashstate
from .budget import BudgetExceeded, in_networks
from .config import MAX_KEY_NAME, ascii_lower
from .keystore import UnknownKey
from .schema import BodyError
from .tokens import TokenFileError

log = logging.getLogger("pkgsign")

# Operations whose refusals are audited (not /ping, /health/*, /openapi.json or unknown paths):
# blueprint endpoint names; the audit line's operation is the part after the dot (``operation()``).
AUDITED_ENDPOINTS = frozenset(("keys.gen_key", "keys.pubkey", "keys.key_info", "keys.delete_key", "signing.sign",
                               "oracle.oracle_sign_rpm", "oracle.oracle_sign_repodata"))
BEARER_REALM = 'Bearer realm="pkgsign"'

plumbing = Blueprint("plumbing", __name__)


class ApiError(Exception):
    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def service():
    """The Service of this process (app.py), built once by create_app."""
    return current_app.extensions["pkgsign"]


def operation():
    """The audit name of the current view: its endpoint without the blueprint ("keys.gen_key" -> "gen_key")."""
    return (request.endpoint or "").rpartition(".")[2]


def client_address():
    return request.remote_addr or "-"


# -- errors ------------------------------------------------------------------------------


@plumbing.app_errorhandler(ApiError)
def api_error(err):
    response = jsonify(error=err.message)
    response.status_code = err.status
    for name, value in err.headers.items():
        response.headers[name] = value
    return response


@plumbing.app_errorhandler(HTTPException)
def http_error(err):
    response = jsonify(error=err.description or err.name)
    response.status_code = err.code or 500
    if err.code == 405 and hasattr(err, "valid_methods") and err.valid_methods:
        response.headers["Allow"] = ", ".join(err.valid_methods)
    return response


@plumbing.app_errorhandler(Exception)
def unexpected(err):  # pragma: no cover - the safety net
    log.exception("unexpected error on %s %s", request.method, request.path)
    return jsonify(error="internal error (see the server log)"), 500


@plumbing.before_app_request
def limit_body_size():
    limit_bytes = service().config.max_request_bytes
    if request.content_length is not None and request.content_length > limit_bytes:
        raise ApiError(413, "request body larger than %d bytes" % limit_bytes)


# -- audit -------------------------------------------------------------------------------


def audit(operation_name, result, **fields):
    g.audited = True
    token = getattr(g, "token", None)
    service().audit.append(operation=operation_name, result=result, token=token.id if token else None,
                           client=client_address(), **fields)


class RefusalCounter:
    """The refusals not written to the audit log (beyond rate_limit_anonymous lines per token or
    address and status) of one process, counted until the next line is written for them."""

    def __init__(self):
        self._counts = {}
        self._lock = threading.Lock()

    def count(self, key):
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def take(self, key):
        with self._lock:
            return self._counts.pop(key, 0)


def bounded_refusal(status):
    """None when a refusal of this status for this token or address is beyond
    rate_limit_anonymous audit lines (it is counted instead); else the extra fields of its line
    (``suppressed``: the refusals counted since the last line)."""
    svc = service()
    token = getattr(g, "token", None)
    key = "audit-refusal:%d:%s" % (status, "token:" + token.id if token else "addr:" + client_address())
    if svc.limiter.check(key, svc.config.rate_limit_anonymous):
        svc.refusals.count(key)
        return None
    count = svc.refusals.take(key)
    return {"suppressed": count} if count else {}


@plumbing.after_app_request
def audit_refusal(response):
    """Every refused request to an operation leaves an audit line (401, 403, 400, 404, 409,
    413, 429 ...), unless the handler wrote a more specific one.

    A flood of 401s (no valid token) or 429s (beyond a token's rate) must not buy one synced
    audit write per request, or the rate limit would not limit the cost: per token or address
    and status, at most rate_limit_anonymous lines; the refusals beyond are counted and the
    next line written for them carries the count (``suppressed``)."""
    status = response.status_code
    if not (400 <= status < 500) or request.endpoint not in AUDITED_ENDPOINTS or getattr(g, "audited", False):
        return response
    extra = {}
    if status in (401, 429):
        extra = bounded_refusal(status)
        if extra is None:
            return response
    payload = response.get_json(silent=True) if response.is_json else None
    reason = payload.get("error") if isinstance(payload, dict) else None
    audit(operation(), "refused", status=status, reason=str(reason)[:300] if reason else None,
          key=getattr(g, "key_name", None), **extra)
    return response


# -- limits ------------------------------------------------------------------------------


def refused(err):
    """A BudgetExceeded as the API's answer; a 503's audit line is bounded like a 429's (the
    after-request audit covers 4xx only)."""
    if err.status >= 500:
        extra = bounded_refusal(err.status)
        if extra is not None:
            audit(operation(), "refused", status=err.status, reason=err.message, **extra)
    raise ApiError(err.status, err.message, {"Retry-After": str(err.retry_after)})


def _queued(wait):
    audit(operation(), "queued", reason="over a limit; waits up to %d s in the keygen queue"
          % service().config.keygen_queue_wait, wait=wait)
    g.audited = False  # the request's outcome still gets its own line


def limit(key, rate, message, queue):
    """Charge one request of ``rate`` to ``key``; 429 (or, for /gen_key from the keygen queue's
    networks, a wait in the queue: budget.py) when it is spent."""
    svc = service()
    try:
        if queue:
            svc.budgets.admit(client_address(), lambda: svc.limiter.check(key, rate), message, _queued)
        else:
            wait = svc.limiter.check(key, rate)
            if wait:
                raise BudgetExceeded(429, message % wait, wait)
    except BudgetExceeded as err:
        refused(err)


# -- authentication ------------------------------------------------------------------------


def requires(scope, anonymous_ok=False, queue=False, secret=None):
    """Decorator: the view runs for a request whose token is valid, not over its rate and has
    ``scope`` (None: any scope); the token is in ``g.token`` (None for an anonymous request, allowed
    with ``anonymous_ok`` from the keygen_open_networks). ``queue``: over a limit, wait in the keygen
    queue (budget.py) instead of a 429. ``secret``: a function returning the token a request carries
    elsewhere than its Authorization header (the Blind Oracle's body), or None for the header."""
    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            authenticate(scope, anonymous_ok, queue, secret() if secret is not None else None)
            return view(*args, **kwargs)
        return wrapper
    return decorate


def authenticate(required_scope, anonymous_ok=False, queue=False, secret=None):
    """Sets g.token; raises 401/403/429 (the checks in this order: header, token, certificate
    binding, rate, scope)."""
    svc = service()
    config = svc.config
    g.token = None
    header = request.headers.get("Authorization", "") if secret is None else "Bearer " + secret
    if not header:
        if anonymous_ok and in_networks(client_address(), config.keygen_open_networks):
            limit("addr:" + client_address(), config.rate_limit_anonymous, "rate limit exceeded; retry in %d s", queue)
            return
        raise ApiError(401, "a bearer token is required", {"WWW-Authenticate": BEARER_REALM})
    scheme, _sep, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise ApiError(401, "use 'Authorization: Bearer <token>'", {"WWW-Authenticate": BEARER_REALM})
    try:
        token = svc.tokens.authenticate(secret.strip())
    except TokenFileError as err:
        log.error("%s", err)
        raise ApiError(503, "the token database is unreadable; see the server log")
    if token is None:
        raise ApiError(401, "invalid or revoked token", {"WWW-Authenticate": BEARER_REALM + ', error="invalid_token"'})
    g.token = token
    # A token bound to a TLS client certificate: mod_ssl's SSL_CLIENT_CERT (SSLOptions
    # +ExportCertData) is set by the server, never from a request header (those are HTTP_*).
    refusal = token.certificate_refusal(request.environ.get("SSL_CLIENT_CERT"))
    if refusal:
        audit("authenticate", "denied", reason="client certificate")
        raise ApiError(403, refusal)
    limit("token:" + token.id, token.rate, "rate limit of token %s exceeded; retry in %%d s" % token.id, queue)
    if required_scope and required_scope not in token.scopes:
        raise ApiError(403, "token %s lacks the %s scope" % (token.id, required_scope))


def authorize_key(record, requested):
    token = g.token
    if token is not None and not token.allows_key(service().keys.names_of(record, requested), record["fingerprint"]):
        raise ApiError(403, "token %s may not use key %s" % (token.id, requested))


# -- request reading ---------------------------------------------------------------------


def json_body(any_type=False):
    if not request.is_json and not any_type:
        raise ApiError(400, "send a JSON object (Content-Type: application/json)")
    try:
        body = request.get_json(silent=True, force=any_type)
    except RecursionError:  # absurdly nested JSON
        body = None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    if not encodable(body):
        raise ApiError(400, "strings must be valid Unicode (no lone surrogates)")
    return body


def resolve(name):
    """The key record of ``name`` (400 for a bad name, 403 outside the token's patterns, 404 unknown)."""
    svc = service()
    if isinstance(name, str):
        g.key_name = name[:MAX_KEY_NAME]
    if not isinstance(name, str) or not name or len(name) > MAX_KEY_NAME or not encodable(name) \
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise ApiError(400, "key must be a non-empty string of at most %d characters" % MAX_KEY_NAME)
    token = getattr(g, "token", None)
    if token is not None and "@" in name and not token.allows_key(_names_before_lookup(name, svc.config.aliases)) \
            and svc.keys.get_metadata(name) is None:
        # Outside the token's patterns and no key of the service: refused before any gpg lookup,
        # as fast as a key outside them that exists (no existence oracle by timing).
        raise ApiError(403, "token %s may not use key %s" % (token.id, name))
    try:
        return svc.keys.resolve(name)
    except UnknownKey:
        if token is not None and not token.allows_key({ascii_lower(name)}):
            # 404 would tell a token which keys exist among those it may not use.
            raise ApiError(403, "token %s may not use key %s" % (token.id, name))
        raise ApiError(404, "unknown key: %s" % name)


def check_body(schema_name, body, explain=None):
    """400 naming the field when ``body`` fails its schema of this instance's document (schema.py).
    ``explain``: a check with more specific messages, run first for a failure other than unknown
    fields (those are answered first, as always)."""
    try:
        service().schemas.check(schema_name, body)
    except BodyError as err:
        if explain is not None and err.keyword != "additionalProperties":
            explain()
        raise ApiError(400, str(err))


def digest_algo_of(body):
    """The digest of a checked body (its schema allows only digests signed from a hash state), or
    the instance's default, which the schema does not see: a default outside them (sha1) is refused."""
    config = service().config
    algo = body.get("digest_algo", config.default_digest)
    if algo not in hashstate.ALGORITHMS:
        raise ApiError(400, "digest_algo %s cannot be signed from a hash state (use %s)"
                       % (algo, ", ".join(a for a in config.allowed_digests if a in hashstate.ALGORITHMS)))
    return algo


def encodable(value, depth=0):
    """True when every string in ``value`` encodes as UTF-8 (JSON allows lone surrogates)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return True
        except UnicodeEncodeError:
            return False
    if depth > 20:
        return True  # deeper values are never used as strings
    if isinstance(value, dict):
        return all(encodable(k, depth + 1) and encodable(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(encodable(item, depth + 1) for item in value)
    return True


def _names_before_lookup(name, aliases):
    """The names a token pattern may match for ``name`` that are known without the keyring: the name
    and every alias that leads to it."""
    names = {ascii_lower(name)}
    for alias, target in aliases.items():
        for _level in range(6):
            if ascii_lower(target) in names:
                names.add(ascii_lower(alias))
                break
            if ascii_lower(target) not in aliases:
                break
            target = aliases[ascii_lower(target)]
    return names
