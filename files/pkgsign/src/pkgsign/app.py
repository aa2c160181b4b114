"""The HTTP API (Flask). The wire format is documented in README.md and openapi.json.

create_app builds the per-process Service and registers the blueprints: web.py (shared plumbing:
errors, audit, authentication), views_meta.py (/ping, /health/*, /openapi.json, /whoami),
views_keys.py (/gen_key, /pubkey, /keys), views_sign.py (/sign) and oracle.py (the Blind Oracle)."""

import logging
import os

from flask import Flask

from . import _gnupg
from .agent import AgentPool
from .audit import AuditLog
from .budget import Budgets
from .config import load_config
from .keystore import KeyStore
from .oracle import oracle
from .schema import RequestSchemas
from .tokens import RateLimiter, TokenStore
from .views_keys import keys
from .views_meta import READY_TTL, Readiness, meta
from .views_sign import signing
from .web import AUDITED_ENDPOINTS, ApiError, RefusalCounter, plumbing

# READY_TTL, ApiError and AUDITED_ENDPOINTS: importers found them here before the blueprints.
__all__ = ["AUDITED_ENDPOINTS", "READY_TTL", "ApiError", "Service", "create_app"]

log = logging.getLogger("pkgsign")


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
    """Everything a request needs, built once per process (web.service() returns it)."""

    def __init__(self, config):
        self.config = config
        self.gnupg = _gnupg.GnuPG(config.gnupg_home, binary=config.gpg_binary)
        self.keys = KeyStore(config, self.gnupg)
        self.tokens = TokenStore(config.tokens_file, default_rate=config.rate_limit_default)
        self.limiter = RateLimiter(config.state_dir)
        self.audit = AuditLog.from_config(config, checkpoints=True)
        self.agent = AgentPool(self.gnupg, config.agent_connections, private=config.private_agents)
        self.budgets = Budgets(config, self.limiter)
        self.readiness = Readiness(self)
        self.schemas = RequestSchemas(config)  # the request bodies' validators, compiled once
        self.refusals = RefusalCounter()
        if self.keys.pool is not None:
            self.keys.pool.start()
        fixed = self.keys.reconcile()
        for what, email in fixed:
            log.warning("recovered an interrupted key %s for %s", what, email)


def create_app(config=None):
    config = config or load_config()
    _configure_logging(config)
    app = Flask("pkgsign")
    app.config["MAX_CONTENT_LENGTH"] = config.max_request_bytes
    app.extensions["pkgsign"] = Service(config)
    for blueprint in (plumbing, meta, keys, signing, oracle):
        app.register_blueprint(blueprint)
    return app
