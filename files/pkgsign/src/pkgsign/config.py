"""Server configuration: the INI file named by PKGSIGN_CONFIG (documented in README.md)."""

import configparser
import ipaddress
import os
import re
from dataclasses import dataclass, field
from logging.handlers import SysLogHandler
from typing import Dict, List, Optional, Tuple

from ._gnupg import ALGORITHMS

DEFAULT_CONFIG_PATH = "/etc/pkgsign/pkgsign.conf"
CONFIG_HELP = "instance configuration (default: $PKGSIGN_CONFIG, else %s)" % DEFAULT_CONFIG_PATH
KEYGEN_ALGORITHMS = tuple(ALGORITHMS)  # the one algorithm table (_gnupg.validation)
KNOWN_DIGESTS = ("sha1", "sha224", "sha256", "sha384", "sha512")
# copr-keygen's form (README.md, "name_email"): the names its validate_name_email takes, as Copr's
# own project names are (Unicode letters and digits: Python's \w): any number of leading "@" (one
# for a Copr group), an owner of word characters, "." and "-", "#", then such characters around
# exactly one "@". Or a plain ASCII address. What no user id may hold (validate_uid_field) is
# refused besides; none of it is a word character but for look-alikes of "(" and ")" (U+2474,
# U+1438 ...). Scoped (?u:): the pattern is compiled with re.ASCII, which an operator's pattern
# keeps. Each part stops at a character the next cannot start with: linear, no backtracking.
_COPR_NAME_CHAR = r"(?u:[\w.-])"
DEFAULT_EMAIL_PATTERN = (r"^(@*{c}+#{c}*@{c}*|[A-Za-z0-9._+-]+@[A-Za-z0-9.-]+)$"
                         .format(c=_COPR_NAME_CHAR))
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    """``text`` with only A-Z folded to a-z: the one case fold of key names and token patterns.
    ``str.lower()`` folds non-ASCII letters onto ASCII ones (KELVIN SIGN to "k"), which would let
    one name reach another's key."""
    return text.translate(_ASCII_LOWER)


# The longest key name a request may give (name_email, fingerprint, key id or alias); web.py
# enforces it, tools/openapi.py publishes it.
MAX_KEY_NAME = 256

# The Blind Oracle's [oracle] table (oracle.py): DISTRIBUTION/KEY_TYPE = KEY; the one source of
# the endpoints' name limits (tools/openapi.py publishes them).
ORACLE_MAX_NAME = 64
ORACLE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"
ORACLE_DEFAULT_DISTRIBUTION = "default"


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or holds an invalid value."""


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


# Largest `states` list in one POST /sign. Sized with `make bench` (section batchsize,
# docs/performance.md): RSA-4096 on a loaded 2-core signer makes about 13-15 signatures a second,
# so 200 states take about 15 s, a quarter of the 60 s request timeout; 1000 took over 60 s.
# The `sign` client sends at most 200 states per request (client.Signer.sign_blobs).
DEFAULT_MAX_DIGESTS = 200


def parse_duration(text: str) -> int:
    """'300', '5m', '2h', '1825d' -> seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text or "")
    if not match:
        raise ConfigError("invalid duration %r (use a number with an optional s/m/h/d unit)" % text)
    return int(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_lifetime(text) -> str:
    """A key lifetime counted from today, in the one grammar of the modules and gpg: N days or
    <n>d|w|m|y (m = months, y = years). 'never' and dates are not lifetimes."""
    from ._gnupg import InvalidInput, parse_expires

    try:
        spec = parse_expires(text)
    except InvalidInput:
        spec = ""
    if spec == "0" or not re.fullmatch(r"[1-9]\d*[dwmy]", spec or ""):
        raise ConfigError("invalid lifetime %r (use N days or <n>d|w|m|y, m = months, e.g. 6m or 5y)" % (text,))
    return spec


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


_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


def parse_size(text: str) -> int:
    """'67108864', '64M', '1G' -> bytes."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)\s*", text or "")
    if not match:
        raise ConfigError("invalid size %r (use a number of bytes with an optional K/M/G unit)" % text)
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


CHECKPOINT_TARGET_RE = re.compile(r"none|syslog|unix:/\S+|file:/\S+|(udp|tcp):(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}")


def default_generation_race() -> int:
    """[keygen] generation_race = auto: one RSA generation per core, at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def _concurrent_keygen(text: str) -> int:
    """[budget] concurrent_keygen: auto = one RSA generation per core (at least 2), 0 = no cap."""
    if text.lower() == "auto":
        return max(2, default_generation_race())
    if not text.isdigit() or int(text) > 1024:
        raise ConfigError("[budget] concurrent_keygen must be auto, 0 (no cap) or a number up to 1024")
    return int(text)


def _bounded(value: int, low: int, high: int, name: str) -> int:
    if value < low or value > high:
        raise ConfigError("%s must be between %d and %d" % (name, low, high))
    return value


def _split_list(text: str) -> List[str]:
    return [item.strip() for item in (text or "").replace("\n", ",").split(",") if item.strip()]


@dataclass
class Config:
    """The settings of pkgsign.conf. A field's default here is the only place it is written:
    load_config uses it when the option is absent (options whose default is computed, "auto",
    say so there)."""

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
    # [budget]: work per token and concurrent key generations (budget.py)
    budget_keygen: Optional[Tuple[int, int]] = (1000, 3600)
    budget_signatures: Optional[Tuple[int, int]] = (60000, 600)
    concurrent_keygen: int = 2
    keygen_wait: int = 30
    keys_per_token: int = 0  # keys a token may have made and not deleted; 0 = no quota (tokens may set their own)
    # [budget] keygen_queue_*: clients of these networks wait for their keygen budget instead of 429
    keygen_queue_networks: List[ipaddress._BaseNetwork] = field(default_factory=list)
    keygen_queue_depth: int = 8
    keygen_queue_wait: int = 300
    # [budget] reserved_workers: workers of a process that /gen_key never holds (budget.py)
    reserved_workers: int = 4
    # [server] serve_*: limits of `pkgsign-admin serve` (serving.py)
    serve_workers: int = 16
    serve_header_timeout: int = 10
    serve_request_timeout: int = 60
    serve_idle_timeout: int = 30
    serve_max_connections: int = 512
    # [audit]: rotation of the hash-chained log and signed checkpoints of its head (audit.py)
    audit_rotate_size: int = 64 * 1024 * 1024
    audit_keep: int = 0
    audit_compress: bool = True
    audit_gnupg_home: str = ""
    checkpoint_interval: int = 60
    checkpoint_targets: Tuple[str, ...] = ("syslog",)
    checkpoint_facility: str = "authpriv"
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
    max_digests_per_request: int = DEFAULT_MAX_DIGESTS
    rate_limit_default: Optional[Tuple[int, int]] = (600, 60)
    rate_limit_anonymous: Optional[Tuple[int, int]] = (60, 60)
    aliases: Dict[str, str] = field(default_factory=dict)
    oracle_keys: Dict[Tuple[str, str], str] = field(default_factory=dict)
    # [maintenance]
    maintain_within_days: int = 365
    maintain_extend: str = "1825d"
    maintain_warn_days: int = 30

    @property
    def metadata_dir(self) -> str:
        return os.path.join(self.state_dir, "keys")

    @property
    def locks_dir(self) -> str:
        return os.path.join(self.state_dir, "locks")


def load_config(path: Optional[str] = None) -> Config:
    path = path or os.environ.get("PKGSIGN_CONFIG") or DEFAULT_CONFIG_PATH
    parser = configparser.ConfigParser()
    # Option names (alias names among them) fold as key names do: str.lower() would make an alias
    # named with KELVIN SIGN one for "k...", and shadow that key.
    parser.optionxform = ascii_lower
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

    def parsed(section, key, parse, default):
        """``parse`` of the option's text; absent: ``default``, a Config field's own (parsed) default."""
        return parse(get(section, key)) if parser.has_option(section, key) else default

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

    algorithm = get("keygen", "algorithm", Config.keygen_algorithm).lower()
    if algorithm not in KEYGEN_ALGORITHMS:
        raise ConfigError("[keygen] algorithm must be one of %s" % ", ".join(KEYGEN_ALGORITHMS))
    pattern = get("keygen", "name_email_pattern", Config.name_email_pattern)
    try:
        re.compile(pattern, re.ASCII)
    except re.error as err:
        raise ConfigError("[keygen] name_email_pattern is not a valid regular expression: %s" % err) from None

    def networks_of(section, key):
        found = []
        for item in _split_list(get(section, key)):
            try:
                found.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ConfigError("[%s] %s: %r is not a network" % (section, key, item)) from None
        return found

    networks = networks_of("keygen", "allow_without_token_from")
    serve_workers = _bounded(get_int("server", "serve_workers", Config.serve_workers), 1, 1024, "[server] serve_workers")
    queue_networks = networks_of("budget", "keygen_queue_from")
    # A /gen_key request holds a worker thread while it waits (queue, slot) and generates: at most
    # serve_workers - reserved_workers of them run at once per process; the rest stay for others.
    reserved = get("budget", "reserved_workers", "auto")
    if reserved.lower() == "auto":
        reserved_workers = min(max(1, serve_workers // 4), serve_workers - 1)
    elif not reserved.isdigit() or int(reserved) >= serve_workers:
        raise ConfigError("[budget] reserved_workers must be auto or between 0 and serve_workers - 1 (%d)"
                          % (serve_workers - 1))
    else:
        reserved_workers = int(reserved)
    queue_depth = get_int("budget", "keygen_queue_depth", Config.keygen_queue_depth)
    if queue_networks and (queue_depth < 1 or queue_depth > serve_workers - reserved_workers):
        # Every waiting request holds one of the workers /gen_key may hold.
        raise ConfigError("[budget] keygen_queue_depth must be between 1 and serve_workers - reserved_workers (%d)"
                          % (serve_workers - reserved_workers))

    pool_algorithms = []
    for item in _split_list(get("keygen", "pool_algorithms", algorithm)):
        item = item.lower()
        if item not in KEYGEN_ALGORITHMS:
            raise ConfigError("[keygen] pool_algorithms: unknown algorithm %r" % item)
        pool_algorithms.append(item)
    pool_size = get_int("keygen", "pool_size", Config.pool_size)
    if pool_size < 0 or pool_size > 10000:
        raise ConfigError("[keygen] pool_size must be between 0 and 10000")
    race = get("keygen", "generation_race", "auto").lower()
    if race == "auto":
        generation_race = default_generation_race()
    else:
        generation_race = get_int("keygen", "generation_race", Config.generation_race)
        if generation_race < 1 or generation_race > 64:
            raise ConfigError("[keygen] generation_race must be auto or between 1 and 64")

    allowed = []
    for item in _split_list(get("signing", "allowed_digests", ", ".join(Config.allowed_digests))):
        item = item.lower()
        if item not in KNOWN_DIGESTS:
            raise ConfigError("[signing] allowed_digests: unknown digest %r" % item)
        allowed.append(item)
    allow_sha1 = get_bool("signing", "allow_sha1", False)
    if allow_sha1 and "sha1" not in allowed:
        allowed.append("sha1")
    if not allow_sha1 and "sha1" in allowed:
        allowed.remove("sha1")
    default_digest = get("signing", "default_digest", Config.default_digest).lower()
    if default_digest not in allowed:
        raise ConfigError("[signing] default_digest %r is not among the allowed digests" % default_digest)

    aliases = {}
    if parser.has_section("aliases"):
        for name in parser.options("aliases"):
            if name in parser.defaults():
                continue
            aliases[name] = parser.get("aliases", name).strip()

    oracle_keys = {}
    if parser.has_section("oracle"):
        for option in parser.options("oracle"):
            if option in parser.defaults():
                continue
            distribution, sep, key_type = option.partition("/")
            if not sep or not re.fullmatch(ORACLE_NAME_PATTERN, distribution) \
                    or not re.fullmatch(ORACLE_NAME_PATTERN, key_type):
                raise ConfigError("[oracle] %r: write DISTRIBUTION/KEY_TYPE = KEY (letters, digits, . _ + -)" % option)
            key = parser.get("oracle", option).strip()
            if not key:
                raise ConfigError("[oracle] %s names no key" % option)
            oracle_keys[(ascii_lower(distribution), ascii_lower(key_type))] = key

    log_level = get("server", "log_level", Config.log_level).upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError("[server] log_level must be DEBUG, INFO, WARNING or ERROR")
    log_file = get("server", "log_file")

    audit_rotate_size = parsed("audit", "rotate_size", parse_size, Config.audit_rotate_size)
    if audit_rotate_size and audit_rotate_size < 4096:
        raise ConfigError("[audit] rotate_size must be 0 (never) or at least 4K")
    audit_keep = get_int("audit", "keep", Config.audit_keep)
    if audit_keep < 0:
        raise ConfigError("[audit] keep must be 0 (keep every rotated file) or a positive number")
    checkpoint_targets = tuple(_split_list(get("audit", "checkpoint_target", ", ".join(Config.checkpoint_targets)))) or ("none",)
    for target in checkpoint_targets:
        if not CHECKPOINT_TARGET_RE.fullmatch(target):
            raise ConfigError("[audit] checkpoint_target: %r is not none, syslog, unix:/PATH, file:/PATH, "
                              "udp:HOST:PORT or tcp:HOST:PORT" % target)
    facility = get("audit", "checkpoint_facility", Config.checkpoint_facility).lower()
    if facility not in SysLogHandler.facility_names:
        raise ConfigError("[audit] checkpoint_facility %r is not a syslog facility" % facility)
    audit_gnupg_home = get("audit", "gnupg_home")

    config = Config(
        path=os.path.abspath(path),
        state_dir=state_dir,
        gnupg_home=path_option("gnupg_home", "gnupg"),
        phrases_dir=path_option("phrases_dir", "phrases"),
        tokens_file=path_option("tokens_file", "tokens.json"),
        audit_log=path_option("audit_log", "audit.log"),
        log_level=log_level,
        log_file=os.path.join(base, log_file) if log_file else "",
        gpg_binary=get("server", "gpg_binary", Config.gpg_binary),
        agent_connections=max(1, get_int("server", "agent_connections", Config.agent_connections)),
        private_agents=get_bool("server", "private_agents", Config.private_agents),
        max_request_bytes=max(1024, get_int("server", "max_request_bytes", Config.max_request_bytes)),
        budget_keygen=parsed("budget", "keygen", parse_rate, Config.budget_keygen),
        budget_signatures=parsed("budget", "signatures", parse_rate, Config.budget_signatures),
        concurrent_keygen=_concurrent_keygen(get("budget", "concurrent_keygen", "auto")),
        keygen_wait=parsed("budget", "keygen_wait", parse_duration, Config.keygen_wait),
        keys_per_token=_bounded(get_int("budget", "keys_per_token", Config.keys_per_token), 0, 10 ** 9, "[budget] keys_per_token"),
        keygen_queue_networks=queue_networks,
        keygen_queue_depth=queue_depth,
        reserved_workers=reserved_workers,
        keygen_queue_wait=parsed("budget", "keygen_queue_wait", parse_duration, Config.keygen_queue_wait),
        serve_workers=serve_workers,
        serve_header_timeout=max(1, parsed("server", "serve_header_timeout", parse_duration, Config.serve_header_timeout)),
        serve_request_timeout=max(1, parsed("server", "serve_request_timeout", parse_duration, Config.serve_request_timeout)),
        serve_idle_timeout=max(1, parsed("server", "serve_idle_timeout", parse_duration, Config.serve_idle_timeout)),
        serve_max_connections=_bounded(get_int("server", "serve_max_connections", Config.serve_max_connections), 1, 100000,
                                       "[server] serve_max_connections"),
        audit_rotate_size=audit_rotate_size,
        audit_keep=audit_keep,
        audit_compress=get_bool("audit", "compress", Config.audit_compress),
        audit_gnupg_home=os.path.join(base, audit_gnupg_home) if audit_gnupg_home
        else os.path.join(state_dir, "audit-gnupg"),
        checkpoint_interval=parsed("audit", "checkpoint_interval", parse_duration, Config.checkpoint_interval),
        checkpoint_targets=checkpoint_targets,
        checkpoint_facility=facility,
        keygen_algorithm=algorithm,
        keygen_expire_days=get_int("keygen", "expire", Config.keygen_expire_days),
        name_email_pattern=pattern,
        max_field_length=get_int("keygen", "max_field_length", Config.max_field_length),
        keygen_open_networks=networks,
        pool_size=pool_size,
        pool_algorithms=tuple(pool_algorithms),
        generation_race=generation_race,
        default_digest=default_digest,
        allowed_digests=tuple(allowed),
        max_digests_per_request=max(1, get_int("signing", "max_digests_per_request", Config.max_digests_per_request)),
        rate_limit_default=parsed("rate_limit", "default", parse_rate, Config.rate_limit_default),
        rate_limit_anonymous=parsed("rate_limit", "anonymous", parse_rate, Config.rate_limit_anonymous),
        aliases=aliases,
        oracle_keys=oracle_keys,
        maintain_within_days=get_int("maintenance", "within_days", Config.maintain_within_days),
        maintain_extend=parse_lifetime(get("maintenance", "extend", Config.maintain_extend)),
        maintain_warn_days=get_int("maintenance", "warn_days", Config.maintain_warn_days),
    )
    return config
