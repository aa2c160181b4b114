"""The HTTP API (Flask). The wire format is documented in README.md and openapi.json."""

import logging
import os
import tempfile
import threading
import time
from binascii import b2a_base64

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from . import _gnupg, __version__, hashstate
from .agent import AgentError, AgentPool
from .audit import AuditLog
from .budget import BudgetExceeded, Budgets, in_networks as _in_networks
from .config import load_config
from .keystore import KeyStore, KeyStoreError, UnknownKey
from .openpgp import build_hashed_area, signature_packets
from .tokens import RateLimiter, TokenFileError, TokenStore
from .wire import SIG_TYPES, armor, trailer

log = logging.getLogger("pkgsign")

MAX_KEY_NAME = 256
# Operations whose refusals are audited (not /ping, /health/*, /openapi.json or unknown paths).
AUDITED_ENDPOINTS = frozenset(("sign", "gen_key", "pubkey", "key_info", "delete_key",
                               "oracle_sign_rpm", "oracle_sign_repodata"))  # oracle.py


class ApiError(Exception):
    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _configure_logging(config):
    logger = logging.getLogger("pkgsign")
    logger.setLevel(config.log_level)
    if not logger.handlers:
        if config.log_file:  # owner-only like the rest of the state, whatever the umask
            os.close(os.open(config.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
        handler = logging.FileHandler(config.log_file) if config.log_file else logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


class Service:
    """Everything a request needs, built once per process."""

    def __init__(self, config):
        self.config = config
        self.gnupg = _gnupg.GnuPG(config.gnupg_home, binary=config.gpg_binary)
        self.keys = KeyStore(config, self.gnupg)
        self.tokens = TokenStore(config.tokens_file, default_rate=config.rate_limit_default)
        self.limiter = RateLimiter(config.state_dir)
        self.audit = AuditLog.from_config(config, checkpoints=True)
        self.agent = AgentPool(self.gnupg, config.agent_connections, private=config.private_agents)
        if self.keys.pool is not None:
            self.keys.pool.start()
        fixed = self.keys.reconcile()
        for what, email in fixed:
            log.warning("recovered an interrupted key %s for %s", what, email)


def create_app(config=None):
    config = config or load_config()
    _configure_logging(config)
    service = Service(config)
    app = Flask("pkgsign")
    app.config["MAX_CONTENT_LENGTH"] = config.max_request_bytes
    app.extensions["pkgsign"] = service

    # -- plumbing --------------------------------------------------------------------

    @app.errorhandler(ApiError)
    def api_error(err):
        response = jsonify(error=err.message)
        response.status_code = err.status
        for name, value in err.headers.items():
            response.headers[name] = value
        return response

    @app.errorhandler(HTTPException)
    def http_error(err):
        response = jsonify(error=err.description or err.name)
        response.status_code = err.code or 500
        if err.code == 405 and hasattr(err, "valid_methods") and err.valid_methods:
            response.headers["Allow"] = ", ".join(err.valid_methods)
        return response

    @app.errorhandler(Exception)
    def unexpected(err):  # pragma: no cover - the safety net
        log.exception("unexpected error on %s %s", request.method, request.path)
        return jsonify(error="internal error (see the server log)"), 500

    @app.before_request
    def limit_body_size():
        if request.content_length is not None and request.content_length > config.max_request_bytes:
            raise ApiError(413, "request body larger than %d bytes" % config.max_request_bytes)

    def client_address():
        return request.remote_addr or "-"

    def audit(operation, result, **fields):
        g.audited = True
        token = getattr(g, "token", None)
        service.audit.append(operation=operation, result=result, token=token.id if token else None,
                             client=client_address(), **fields)

    suppressed_refusals = {}
    suppressed_lock = threading.Lock()

    @app.after_request
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
            token = getattr(g, "token", None)
            key = "audit-refusal:%d:%s" % (status, "token:" + token.id if token else "addr:" + client_address())
            if service.limiter.check(key, config.rate_limit_anonymous):
                with suppressed_lock:
                    suppressed_refusals[key] = suppressed_refusals.get(key, 0) + 1
                return response
            with suppressed_lock:
                count = suppressed_refusals.pop(key, 0)
            if count:
                extra["suppressed"] = count
        payload = response.get_json(silent=True) if response.is_json else None
        reason = payload.get("error") if isinstance(payload, dict) else None
        audit(request.endpoint, "refused", status=status, reason=str(reason)[:300] if reason else None,
              key=getattr(g, "key_name", None), **extra)
        return response

    def queued(wait):
        audit(request.endpoint, "queued", reason="over a limit; waits up to %d s in the keygen queue"
              % config.keygen_queue_wait, wait=wait)
        g.audited = False  # the request's outcome still gets its own line

    def limit(key, rate, message, queue):
        """Charge one request of ``rate`` to ``key``; 429 (or, for /gen_key from the keygen queue's
        networks, a wait in the queue: budget.py) when it is spent."""
        try:
            if queue:
                budgets.admit(client_address(), lambda: service.limiter.check(key, rate), message, queued)
            else:
                wait = service.limiter.check(key, rate)
                if wait:
                    raise BudgetExceeded(429, message % wait, wait)
        except BudgetExceeded as err:
            if err.status >= 500:  # the after-request audit covers 4xx only
                audit(request.endpoint, "refused", status=err.status, reason=err.message)
            raise ApiError(err.status, err.message, {"Retry-After": str(err.retry_after)})

    def authenticate(required_scope, anonymous_ok=False, queue=False, secret=None):
        """The token of this request (also in g.token); raises 401/403/429. ``secret``: a token
        the request carries elsewhere than its Authorization header (the Blind Oracle's body)."""
        g.token = None
        header = request.headers.get("Authorization", "") if secret is None else "Bearer " + secret
        if not header:
            if anonymous_ok and _in_networks(client_address(), config.keygen_open_networks):
                limit("addr:" + client_address(), config.rate_limit_anonymous,
                      "rate limit exceeded; retry in %d s", queue)
                return None
            raise ApiError(401, "a bearer token is required", {"WWW-Authenticate": 'Bearer realm="pkgsign"'})
        scheme, _sep, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise ApiError(401, "use 'Authorization: Bearer <token>'", {"WWW-Authenticate": 'Bearer realm="pkgsign"'})
        try:
            token = service.tokens.authenticate(secret.strip())
        except TokenFileError as err:
            log.error("%s", err)
            raise ApiError(503, "the token database is unreadable; see the server log")
        if token is None:
            raise ApiError(401, "invalid or revoked token", {"WWW-Authenticate": 'Bearer realm="pkgsign", error="invalid_token"'})
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
        return token

    def authorize_key(token, record, requested):
        if token is not None and not token.allows_key(service.keys.names_of(record, requested)):
            raise ApiError(403, "token %s may not use key %s" % (token.id, requested))

    def json_body(any_type=False):
        if not request.is_json and not any_type:
            raise ApiError(400, "send a JSON object (Content-Type: application/json)")
        try:
            body = request.get_json(silent=True, force=any_type)
        except RecursionError:  # absurdly nested JSON
            body = None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        if not _encodable(body):
            raise ApiError(400, "strings must be valid Unicode (no lone surrogates)")
        return body

    def resolve(name):
        if isinstance(name, str):
            g.key_name = name[:MAX_KEY_NAME]
        if not isinstance(name, str) or not name or len(name) > MAX_KEY_NAME or not _encodable(name) \
                or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
            raise ApiError(400, "key must be a non-empty string of at most %d characters" % MAX_KEY_NAME)
        token = getattr(g, "token", None)
        if token is not None and "@" in name and not token.allows_key(_names_before_lookup(name, config.aliases)) \
                and service.keys.get_metadata(name) is None:
            # Outside the token's patterns and no key of the service: refused before any gpg lookup,
            # as fast as a key outside them that exists (no existence oracle by timing).
            raise ApiError(403, "token %s may not use key %s" % (token.id, name))
        try:
            return service.keys.resolve(name)
        except UnknownKey:
            token = getattr(g, "token", None)
            if token is not None and not token.allows_key({name.lower()}):
                # 404 would tell a token which keys exist among those it may not use.
                raise ApiError(403, "token %s may not use key %s" % (token.id, name))
            raise ApiError(404, "unknown key: %s" % name)

    def digest_algo_of(body):
        algo = body.get("digest_algo", config.default_digest)
        if not isinstance(algo, str):
            raise ApiError(400, "digest_algo must be a string")
        algo = algo.lower()
        if algo not in config.allowed_digests:
            raise ApiError(400, "digest_algo %s is not allowed here (allowed: %s)" % (algo, ", ".join(config.allowed_digests)))
        return algo

    # -- copr-keygen compatible ----------------------------------------------------

    readiness = _Readiness(service)
    budgets = Budgets(config, service.limiter)

    @app.route("/ping")
    def ping():
        return Response("pong\n", content_type="text/plain; charset=utf-8")

    @app.route("/health/live")
    def live():
        return jsonify(status="live", version=__version__)

    @app.route("/health/ready")
    def ready():
        checks = readiness.checks()  # cached: a flood of probes runs gpg at most once per READY_TTL
        ok = all(checks.values())
        response = jsonify(ready=ok, checks=checks)
        response.status_code = 200 if ok else 503
        return response

    @app.route("/openapi.json")
    def openapi():
        return Response(_openapi_text(), content_type="application/json")

    @app.route("/whoami")
    def whoami():
        # What `sign -t` shows: the credentials are good, and whose they are.
        token = authenticate(None)
        return jsonify(token=token.id, scopes=sorted(token.scopes), keys=token.key_patterns)

    @app.route("/gen_key", methods=["POST"])
    def gen_key():
        token = authenticate("keygen", anonymous_ok=True, queue=True)
        if request.is_json or _looks_like_json(request.get_data(cache=True)):
            # copr-keygen reads the body as JSON whatever its Content-Type says.
            body = json_body(any_type=True)
        else:
            body = request.form.to_dict()
            if not _encodable(body):
                raise ApiError(400, "strings must be valid Unicode (no lone surrogates)")
        unknown = set(body) - {"name_real", "name_email", "name_comment", "key_length", "expire", "algorithm"}
        if unknown:
            raise ApiError(400, "unknown field(s): %s" % ", ".join(sorted(unknown)))
        try:
            algorithm, days = service.keys.validate_request(
                body.get("name_real"), body.get("name_email"), body.get("name_comment"),
                body.get("key_length"), body.get("expire"), body.get("algorithm"))
        except _gnupg.InvalidInput as err:
            raise ApiError(400, str(err))
        email = body["name_email"]  # as given: case is kept, lookups fold it (README.md, "name_email")
        if token is not None and not token.allows_key({email.lower()}):
            audit("gen_key", "denied", key=email)
            raise ApiError(403, "token %s may not create key %s" % (token.id, email))
        slot = _admit_keygen(budgets, service.keys, token, client_address(), email, algorithm, audit)
        started = time.monotonic()
        try:
            created, record = service.keys.generate(body["name_real"], email, body.get("name_comment"),
                                                    algorithm, days, created_by=token.id if token else None)
        except _gnupg.InvalidInput as err:
            raise ApiError(400, str(err))
        except (_gnupg.GpgError, KeyStoreError) as err:
            log.error("key generation for %s failed: %s", email, getattr(err, "stderr", "") or err)
            audit("gen_key", "error", key=email)
            raise ApiError(500, "key generation failed: %s" % getattr(err, "message", err))
        finally:
            budgets.release(slot)
        audit("gen_key", "created" if created else "exists", key=email, fingerprint=record["fingerprint"])
        if created:
            log.info("generated %s key %s for %s in %.2f s", algorithm, record["fingerprint"], email,
                     time.monotonic() - started)
        # The key's own spelling: a second call in another case answers with the first one's.
        response = jsonify(name_email=record.get("name_email") or email, fingerprint=record["fingerprint"],
                           algorithm=record["algorithm"], created=created)
        response.status_code = 201 if created else 200
        return response

    @app.route("/pubkey/<path:name>")
    def pubkey(name):
        token = authenticate(None)
        record = resolve(name)
        authorize_key(token, record, name)
        try:
            with service.keys.keyring_lock():
                data = service.keys.public_key(record)
        except _gnupg.KeyNotFound:
            raise ApiError(404, "unknown key: %s" % name)
        return Response(data, content_type="application/pgp-keys")

    @app.route("/keys/<path:name>", methods=["GET"])
    def key_info(name):
        token = authenticate(None)
        record = resolve(name)
        authorize_key(token, record, name)
        return jsonify(_public_record(record))

    @app.route("/keys/<path:name>", methods=["DELETE"])
    def delete_key(name):
        token = authenticate("admin")
        record = resolve(name)
        authorize_key(token, record, name)
        if not record.get("name_email") or service.keys.get_metadata(record["name_email"]) is None:
            raise ApiError(400, "key %s is not managed by this service (configured or imported by hand)" % name)
        try:
            service.keys.delete(record["name_email"])
        except UnknownKey:
            raise ApiError(404, "unknown key: %s" % name)
        except _gnupg.GpgError as err:
            audit("delete_key", "error", key=record["name_email"], fingerprint=record["fingerprint"])
            raise ApiError(500, "deleting the key failed: %s" % err.message)
        audit("delete_key", "deleted", key=record["name_email"], fingerprint=record["fingerprint"])
        return jsonify(deleted=record["name_email"], fingerprint=record["fingerprint"])

    # -- remote signing ------------------------------------------------------------

    def finish_and_sign(token, record, name, digest_algo, sig_type, states, operation):
        """Charge the token's budget, build the hashed area here, finish every state with it and
        sign the digests; (creation time, digests, signature packets). POST /sign and the Blind
        Oracle endpoints (oracle.py) both sign through this."""
        _check_usable(record, name)
        try:
            budgets.charge_signatures(token.id, len(states))  # [budget] signatures: one per state
        except BudgetExceeded as err:
            audit(operation, "refused", key=name, status=err.status, reason=err.message)
            raise ApiError(err.status, err.message, {"Retry-After": str(err.retry_after)})
        now = int(time.time())
        area = build_hashed_area(SIG_TYPES[sig_type], record["pubkey_algo"], digest_algo,
                                 record["signing_fingerprint"], now)
        suffix = area + trailer(area)
        digests = [hashstate.finish(state, suffix).hex() for state in states]
        passphrase = service.keys.passphrase_for(record)
        try:
            # All digests of the request on one agent connection, pipelined (agent.py).
            sexps = service.agent.sign_many(record["signing_keygrip"], digest_algo, digests, passphrase)
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

    SIGN_FIELDS = {"key", "digest_algo", "sig_type", "states", "armor"}

    @app.route("/sign", methods=["POST"])
    def sign():
        """Finish the hash of each state with a hashed area made here, and sign the digests.

        The client sends where its hash stands after the data (hashstate.py), never a digest:
        the last bytes hashed are always this server's hashed area (a binary or text signature,
        created now, by the signing key) and the v4 trailer, so a signature made here verifies
        only as a data signature of that type and time (README.md, "Why the signer is no oracle")."""
        token = authenticate("sign")
        body = json_body()
        name = body.get("key")
        record = resolve(name)
        try:
            authorize_key(token, record, name)
        except ApiError:
            audit("sign", "denied", key=name, fingerprint=record["fingerprint"])
            raise
        unknown = set(body) - SIGN_FIELDS
        if unknown:
            if unknown & {"digests", "hashed_area"}:
                raise ApiError(400, "digests are no longer signed: send the hash states of the data "
                                    "(\"states\"; this client is older than the server)")
            raise ApiError(400, "unknown field(s): %s" % ", ".join(sorted(unknown)))
        digest_algo = digest_algo_of(body)
        if digest_algo not in hashstate.ALGORITHMS:
            raise ApiError(400, "digest_algo %s cannot be signed from a hash state (use %s)"
                           % (digest_algo, ", ".join(a for a in config.allowed_digests if a in hashstate.ALGORITHMS)))
        sig_type = body.get("sig_type", "binary")
        if not isinstance(sig_type, str) or sig_type not in SIG_TYPES:
            raise ApiError(400, "sig_type must be binary or text")
        want_armor = body.get("armor", False)
        if not isinstance(want_armor, bool):
            raise ApiError(400, "armor must be true or false")
        items = body.get("states")
        if not isinstance(items, list) or not items:
            raise ApiError(400, "states must be a non-empty list of hash states")
        if len(items) > config.max_digests_per_request:
            raise ApiError(400, "at most %d states per request" % config.max_digests_per_request)
        try:
            states = [hashstate.parse_state(digest_algo, item, index) for index, item in enumerate(items)]
        except hashstate.StateError as err:
            raise ApiError(400, str(err))
        now, digests, packets = finish_and_sign(token, record, name, digest_algo, sig_type, states, "sign")
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

    from . import oracle

    oracle.register(app, service, config, authenticate=authenticate, resolve=resolve, authorize_key=authorize_key,
                    audit=audit, json_body=json_body, digest_algo_of=digest_algo_of, finish_and_sign=finish_and_sign,
                    api_error=ApiError)
    return app


def _encodable(value, depth=0):
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
        return all(_encodable(k, depth + 1) and _encodable(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_encodable(item, depth + 1) for item in value)
    return True


def _check_usable(record, name):
    if record.get("signing_problem"):
        # Never a certify-only primary or a subkey without its secret here (keystore.signing_part).
        raise ApiError(409, "key %s cannot sign: %s" % (name, record["signing_problem"]))
    if record.get("revoked"):
        raise ApiError(409, "key %s is revoked" % name)
    expires = record.get("expires")
    if expires and expires <= time.time():
        raise ApiError(409, "key %s has expired; prolong it (pkgsign-admin maintain)" % name)


GPG_ERR_NO_SECKEY = 17


def _no_secret_key(err):
    """True for gpg-agent's 'ERR <code> No secret key' (the error code is the low 16 bits)."""
    words = str(err).split()
    return isinstance(err, AgentError) and len(words) > 1 and words[0] == "ERR" and words[1].isdigit() \
        and int(words[1]) & 0xFFFF == GPG_ERR_NO_SECKEY


def _public_record(record):
    fields = ("name_email", "uids", "fingerprint", "key_id", "algorithm", "created", "expires",
              "signing_fingerprint", "signing_key_id", "pubkey_algo", "signing_algorithm", "origin")
    return {field: record.get(field) for field in fields}


def _looks_like_json(data):
    """A body whose first non-blank byte opens a JSON object (form bodies never start with "{")."""
    return data.lstrip(b" \t\r\n")[:1] == b"{"


def _admit_keygen(budgets, keys, token, address, email, algorithm, audit):
    """A new key costs a key generation of the token's budget and, for RSA, a generation slot
    (None when none is needed); 429/503 with Retry-After otherwise (from the keygen queue's
    networks: after waiting in the queue, budget.py). A key that exists costs nothing."""
    if keys.get_metadata(email) is not None:
        return None
    try:
        budgets.charge_keygen(token.id if token is not None else "addr:" + address, address,
                              lambda wait: audit("gen_key", "queued", key=email, wait=wait))
        return budgets.keygen_slot(algorithm, keys.pool)
    except BudgetExceeded as err:
        audit("gen_key", "refused", key=email, status=err.status, reason=err.message)
        raise ApiError(err.status, err.message, {"Retry-After": str(err.retry_after)})


def _names_before_lookup(name, aliases):
    """The names a token pattern may match for ``name`` that are known without the keyring: the name
    and every alias that leads to it."""
    names = {name.lower()}
    for alias, target in aliases.items():
        for _level in range(6):
            if target.lower() in names:
                names.add(alias.lower())
                break
            if target.lower() not in aliases:
                break
            target = aliases[target.lower()]
    return names


READY_TTL = 5.0


class _Readiness:
    """The readiness checks (keyring, agent, state directory) of one process, run at most once per
    READY_TTL seconds and by one thread at a time: /health/ready is public, and every run costs a
    gpg process and an agent connection that signing needs. While one thread refreshes, the others
    answer with the previous result."""

    def __init__(self, service):
        self.service = service
        self._lock = threading.Lock()
        self._checks = None
        self._at = 0.0

    def checks(self):
        if self._checks is not None and time.monotonic() - self._at < READY_TTL:
            return self._checks
        if not self._lock.acquire(blocking=self._checks is None):
            return self._checks
        try:
            if self._checks is None or time.monotonic() - self._at >= READY_TTL:
                service = self.service
                self._checks = {"keyring": _keyring_answers(service), "agent": service.agent.ping(),
                                "state_dir": _writable(service.config.state_dir)}
                self._at = time.monotonic()
            return self._checks
        finally:
            self._lock.release()


def _keyring_answers(service):
    try:
        with service.keys.keyring_lock(blocking=False) as locked:
            if locked is None:
                return True  # a writer holds the keyring: it answers, and the probe must not wait
            result = service.gnupg.run(["--with-colons", "--list-keys", "--", "<readiness-probe@pkgsign.invalid>"],
                                       check=False, timeout=20)
    except Exception:  # noqa: BLE001 - any failure means not ready
        return False
    return result.returncode == 0 or "No public key" in result.stderr


def _writable(directory):
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".ready-"):
            return True
    except OSError:
        return False


_OPENAPI = None


def _openapi_text():
    global _OPENAPI
    if _OPENAPI is None:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "openapi.json"), encoding="utf-8") as handle:
            _OPENAPI = handle.read()
    return _OPENAPI
