"""Health and meta views: /ping (copr-keygen), /health/live, /health/ready, /openapi.json, /whoami."""

import tempfile
import threading
import time

from flask import Blueprint, Response, g, jsonify

from . import __version__
from .web import requires, service

meta = Blueprint("meta", __name__)

READY_TTL = 5.0


@meta.route("/ping")
def ping():
    return Response("pong\n", content_type="text/plain; charset=utf-8")


@meta.route("/health/live")
def live():
    return jsonify(status="live", version=__version__)


@meta.route("/health/ready")
def ready():
    checks = service().readiness.checks()  # cached: a flood of probes runs gpg at most once per READY_TTL
    ok = all(checks.values())
    response = jsonify(ready=ok, checks=checks)
    response.status_code = 200 if ok else 503
    return response


@meta.route("/openapi.json")
def openapi():
    # The published document with this instance's limits: what check_body validates with (schema.py).
    return Response(service().schemas.text, content_type="application/json")


@meta.route("/whoami")
@requires(None)
def whoami():
    # What `sign -t` shows: the credentials are good, and whose they are.
    token = g.token
    return jsonify(token=token.id, scopes=sorted(token.scopes), keys=token.key_patterns)


class Readiness:
    """The readiness checks (keyring, agent, state directory) of one process, run at most once per
    READY_TTL seconds and by one thread at a time: /health/ready is public, and every run costs a
    gpg process and an agent connection that signing needs. While one thread refreshes, the others
    answer with the previous result."""

    def __init__(self, svc):
        self.service = svc
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
                svc = self.service
                self._checks = {"keyring": _keyring_answers(svc), "agent": svc.agent.ping(),
                                "state_dir": _writable(svc.config.state_dir)}
                self._at = time.monotonic()
            return self._checks
        finally:
            self._lock.release()


def _keyring_answers(svc):
    try:
        with svc.keys.keyring_lock(blocking=False) as locked:
            if locked is None:
                return True  # a writer holds the keyring: it answers, and the probe must not wait
            result = svc.gnupg.run(["--with-colons", "--list-keys", "--", "<readiness-probe@pkgsign.invalid>"],
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
