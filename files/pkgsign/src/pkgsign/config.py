"""Server configuration: the INI file named by PKGSIGN_CONFIG (documented in README.md)."""

import configparser
import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

DEFAULT_CONFIG_PATH = "/etc/pkgsign/pkgsign.conf"
KEYGEN_ALGORITHMS = ("rsa2048", "rsa3072", "rsa4096", "ed25519")
KNOWN_DIGESTS = ("sha1", "sha224", "sha256", "sha384", "sha512")
DEFAULT_EMAIL_PATTERN = r"^[A-Za-z0-9._+-]+(#[A-Za-z0-9._+-]+)?@[A-Za-z0-9.-]+$"


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or holds an invalid value."""


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """'300', '5m', '2h', '1825d' -> seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text or "")
    if not match:
        raise ConfigError("invalid duration %r (use a number with an optional s/m/h/d unit)" % text)
    return int(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_rate(text: str) -> Optional[Tuple[int, int]]:
    """'600/60' -> (600 requests, 60 seconds); '0' or '' -> None (unlimited)."""
    text = (text or "").strip()
    if text in ("", "0"):
        return None
    match = re.fullmatch(r"(\d+)\s*/\s*(\d+[smhd]?)", text)
    if not match:
        raise ConfigError("invalid rate limit %r (use REQUESTS/SECONDS, e.g. 600/60)" % text)
    count, window = int(match.group(1)), parse_duration(match.group(2))
    if count == 0:
        return None
    if window <= 0:
        raise ConfigError("invalid rate limit %r: the window must be positive" % text)
    return count, window


def default_generation_race() -> int:
    """[keygen] generation_race = auto: one RSA generation per core, at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def _split_list(text: str) -> List[str]:
    return [item.strip() for item in (text or "").replace("\n", ",").split(",") if item.strip()]


@dataclass
class Config:
    path: str
    state_dir: str
    gnupg_home: str
    phrases_dir: str
    tokens_file: str
    audit_log: str
    log_level: str = "INFO"
    log_file: str = ""
    gpg_binary: str = "gpg"
    agent_connections: int = 4
    private_agents: bool = True
    max_request_bytes: int = 1048576
    keygen_algorithm: str = "rsa4096"
    keygen_expire_days: int = 0
    name_email_pattern: str = DEFAULT_EMAIL_PATTERN
    max_field_length: int = 256
    keygen_open_networks: List[ipaddress._BaseNetwork] = field(default_factory=list)
    pool_size: int = 0
    pool_algorithms: Tuple[str, ...] = ()
    generation_race: int = 1
    default_digest: str = "sha256"
    allowed_digests: Tuple[str, ...] = ("sha256", "sha384", "sha512")
    max_digests_per_request: int = 1000
    rate_limit_default: Optional[Tuple[int, int]] = (600, 60)
    rate_limit_anonymous: Optional[Tuple[int, int]] = (60, 60)
    aliases: Dict[str, str] = field(default_factory=dict)
    maintain_within_days: int = 365
    maintain_extend: str = "1825d"

    @property
    def metadata_dir(self) -> str:
        return os.path.join(self.state_dir, "keys")

    @property
    def locks_dir(self) -> str:
        return os.path.join(self.state_dir, "locks")


def load_config(path: Optional[str] = None) -> Config:
    path = path or os.environ.get("PKGSIGN_CONFIG") or DEFAULT_CONFIG_PATH
    parser = configparser.ConfigParser()
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as err:
        raise ConfigError("cannot read configuration %s: %s" % (path, err.strerror)) from err
    except configparser.Error as err:
        raise ConfigError("invalid configuration %s: %s" % (path, err)) from err
    try:
        return _from_parser(path, parser)
    except (ValueError, configparser.Error) as err:
        if isinstance(err, ConfigError):
            raise ConfigError("%s: %s" % (path, err)) from err
        raise ConfigError("%s: %s" % (path, err)) from err


def _from_parser(path: str, parser: configparser.ConfigParser) -> Config:
    def get(section, key, default=""):
        if parser.has_option(section, key):
            return parser.get(section, key).strip()
        return default

    def get_int(section, key, default):
        value = get(section, key, str(default))
        try:
            return int(value)
        except ValueError:
            raise ConfigError("[%s] %s must be an integer, not %r" % (section, key, value)) from None

    def get_bool(section, key, default):
        if not parser.has_option(section, key):
            return default
        try:
            return parser.getboolean(section, key)
        except ValueError:
            raise ConfigError("[%s] %s must be yes or no" % (section, key)) from None

    state_dir = get("server", "state_dir")
    if not state_dir:
        raise ConfigError("[server] state_dir is required")
    base = os.path.dirname(os.path.abspath(path))
    state_dir = os.path.join(base, state_dir)  # relative paths are relative to the config file

    def path_option(key, default_name):
        value = get("server", key)
        return os.path.join(base, value) if value else os.path.join(state_dir, default_name)

    algorithm = get("keygen", "algorithm", "rsa4096").lower()
    if algorithm not in KEYGEN_ALGORITHMS:
        raise ConfigError("[keygen] algorithm must be one of %s" % ", ".join(KEYGEN_ALGORITHMS))
    pattern = get("keygen", "name_email_pattern", DEFAULT_EMAIL_PATTERN)
    try:
        re.compile(pattern)
    except re.error as err:
        raise ConfigError("[keygen] name_email_pattern is not a valid regular expression: %s" % err) from None
    networks = []
    for item in _split_list(get("keygen", "allow_without_token_from")):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError("[keygen] allow_without_token_from: %r is not a network" % item) from None

    pool_algorithms = []
    for item in _split_list(get("keygen", "pool_algorithms", algorithm)):
        item = item.lower()
        if item not in KEYGEN_ALGORITHMS:
            raise ConfigError("[keygen] pool_algorithms: unknown algorithm %r" % item)
        pool_algorithms.append(item)
    pool_size = get_int("keygen", "pool_size", 0)
    if pool_size < 0 or pool_size > 10000:
        raise ConfigError("[keygen] pool_size must be between 0 and 10000")
    race = get("keygen", "generation_race", "auto").lower()
    if race == "auto":
        generation_race = default_generation_race()
    else:
        generation_race = get_int("keygen", "generation_race", 1)
        if generation_race < 1 or generation_race > 64:
            raise ConfigError("[keygen] generation_race must be auto or between 1 and 64")

    allowed = []
    for item in _split_list(get("signing", "allowed_digests", "sha256, sha384, sha512")):
        item = item.lower()
        if item not in KNOWN_DIGESTS:
            raise ConfigError("[signing] allowed_digests: unknown digest %r" % item)
        allowed.append(item)
    allow_sha1 = get_bool("signing", "allow_sha1", False)
    if allow_sha1 and "sha1" not in allowed:
        allowed.append("sha1")
    if not allow_sha1 and "sha1" in allowed:
        allowed.remove("sha1")
    default_digest = get("signing", "default_digest", "sha256").lower()
    if default_digest not in allowed:
        raise ConfigError("[signing] default_digest %r is not among the allowed digests" % default_digest)

    aliases = {}
    if parser.has_section("aliases"):
        for name in parser.options("aliases"):
            if name in parser.defaults():
                continue
            aliases[name] = parser.get("aliases", name).strip()

    log_level = get("server", "log_level", "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError("[server] log_level must be DEBUG, INFO, WARNING or ERROR")
    log_file = get("server", "log_file")

    config = Config(
        path=os.path.abspath(path),
        state_dir=state_dir,
        gnupg_home=path_option("gnupg_home", "gnupg"),
        phrases_dir=path_option("phrases_dir", "phrases"),
        tokens_file=path_option("tokens_file", "tokens.json"),
        audit_log=path_option("audit_log", "audit.log"),
        log_level=log_level,
        log_file=os.path.join(base, log_file) if log_file else "",
        gpg_binary=get("server", "gpg_binary", "gpg"),
        agent_connections=max(1, get_int("server", "agent_connections", 4)),
        private_agents=get_bool("server", "private_agents", True),
        max_request_bytes=max(1024, get_int("server", "max_request_bytes", 1048576)),
        keygen_algorithm=algorithm,
        keygen_expire_days=get_int("keygen", "expire", 0),
        name_email_pattern=pattern,
        max_field_length=get_int("keygen", "max_field_length", 256),
        keygen_open_networks=networks,
        pool_size=pool_size,
        pool_algorithms=tuple(pool_algorithms),
        generation_race=generation_race,
        default_digest=default_digest,
        allowed_digests=tuple(allowed),
        max_digests_per_request=max(1, get_int("signing", "max_digests_per_request", 1000)),
        rate_limit_default=parse_rate(get("rate_limit", "default", "600/60")),
        rate_limit_anonymous=parse_rate(get("rate_limit", "anonymous", "60/60")),
        aliases=aliases,
        maintain_within_days=get_int("maintenance", "within_days", 365),
        maintain_extend=get("maintenance", "extend", "1825d"),
    )
    parse_duration(config.maintain_extend)
    return config
