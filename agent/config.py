"""The agent's TOML configuration: every key, its default and its check, in one place.

``load_config(path)`` reads the file, rejects unknown sections and keys, checks every
value and returns a frozen ``Config``. Paths in the file are relative to the file's own
folder. ``DEFAULTS`` is the single table of defaults; docs/configuration.md documents it.
"""

import ipaddress
import os
import secrets
import socket
import tomllib
from dataclasses import dataclass
from pathlib import Path

from agent.errors import ConfigError

#: Every section and key with its default. ``None`` means required (or unset).
DEFAULTS: dict[str, dict[str, object]] = {
    "agent": {"id": None, "log_level": "INFO"},
    "listen": {
        "address": "::",
        "udp_port": 4739,
        "tcp_port": 4739,
        "exporters": None,
        "template_lifetime": 1800.0,
    },
    "model": {
        "bundle": None,
        "threshold": "lambda1",
        "batch_size": 4096,
        "batch_timeout_ms": 50,
    },
    "homes": {
        "prefixes": None,
        "home_prefix_v4": 32,
        "home_prefix_v6": 56,
        "subscribers": None,
        "hash_key_file": "hash.key",
        "max_homes": 65536,
    },
    "trust": {"window": None, "clock": "wall"},
    "upstream": {
        "url": "",
        "secret_file": None,
        "timeout": 5.0,
        "detection_interval": 5.0,
    },
    "spool": {
        "path": "spool",
        "max_bytes": 67108864,
        "when_full": "drop-oldest",
    },
    "metrics": {"address": "127.0.0.1", "port": 0},
}

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
THRESHOLDS = ("lambda1", "lambda2")
WHEN_FULL = ("drop-oldest", "drop-newest")


@dataclass(frozen=True)
class Config:
    """A checked configuration; one attribute per section, each a dict of its keys."""

    agent: dict
    listen: dict
    model: dict
    homes: dict
    trust: dict
    upstream: dict
    spool: dict
    metrics: dict
    source: Path | None = None


def load_config(path: str | Path) -> Config:
    """Read and check a TOML config file; raise ``ConfigError`` naming the bad key."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from exc
    return build_config(raw, base=path.parent, source=path)


def build_config(raw: dict, *, base: Path = Path("."), source: Path | None = None) -> Config:
    """Check a parsed config mapping against ``DEFAULTS`` and fill in the defaults."""
    sections = {}
    for name, value in raw.items():
        if name not in DEFAULTS:
            raise ConfigError(f"unknown config section [{name}]")
        if not isinstance(value, dict):
            raise ConfigError(f"[{name}] must be a table")
    for name, keys in DEFAULTS.items():
        given = raw.get(name, {})
        for key in given:
            if key not in keys:
                raise ConfigError(f"unknown config key {name}.{key}")
        sections[name] = {**keys, **given}

    _check_agent(sections["agent"])
    _check_listen(sections["listen"])
    _check_model(sections["model"], base)
    _check_homes(sections["homes"], base)
    _check_trust(sections["trust"])
    _check_upstream(sections["upstream"], base)
    _check_spool(sections["spool"], base)
    _check_metrics(sections["metrics"])
    return Config(**sections, source=source)


def _fail(key: str, why: str, value: object) -> ConfigError:
    return ConfigError(f"config key {key}: {why} (got {value!r})")


def _int(section: dict, name: str, key: str, low: int, high: int) -> None:
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(f"{name}.{key}", f"must be an integer in [{low}, {high}]", value)


def _number(section: dict, name: str, key: str, low: float) -> None:
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= low:
        raise _fail(f"{name}.{key}", f"must be a number above {low}", value)
    section[key] = float(value)


def _choice(section: dict, name: str, key: str, choices: tuple) -> None:
    if section[key] not in choices:
        raise _fail(f"{name}.{key}", f"must be one of {', '.join(choices)}", section[key])


def _path(section: dict, name: str, key: str, base: Path, required: bool = False) -> None:
    value = section[key]
    if value is None or value == "":
        if required:
            raise ConfigError(f"config key {name}.{key} is required")
        section[key] = None
        return
    if not isinstance(value, str):
        raise _fail(f"{name}.{key}", "must be a path string", value)
    section[key] = (base / value).resolve()


def _check_agent(section: dict) -> None:
    if section["id"] is None:
        section["id"] = socket.gethostname()
    if not isinstance(section["id"], str) or not section["id"]:
        raise _fail("agent.id", "must be a non-empty string", section["id"])
    section["log_level"] = str(section["log_level"]).upper()
    _choice(section, "agent", "log_level", LOG_LEVELS)


def _check_listen(section: dict) -> None:
    try:
        ipaddress.ip_address(section["address"])
    except (ValueError, TypeError):
        raise _fail("listen.address", "must be an IP address", section["address"]) from None
    _int(section, "listen", "udp_port", 0, 65535)
    _int(section, "listen", "tcp_port", 0, 65535)
    _number(section, "listen", "template_lifetime", 0.0)

    exporters = section["exporters"]
    if exporters is None:
        raise ConfigError("config key listen.exporters is required (addresses accepted)")
    if not isinstance(exporters, list) or not exporters:
        raise _fail("listen.exporters", "must be a non-empty list of addresses", exporters)
    section["exporters"] = frozenset(_address("listen.exporters", a) for a in exporters)


def _address(key: str, text: object) -> str:
    """An address in the canonical text form the receiver compares against."""
    try:
        addr = ipaddress.ip_address(text)
    except (ValueError, TypeError):
        raise _fail(key, "is not an IP address", text) from None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr)


def _check_model(section: dict, base: Path) -> None:
    _path(section, "model", "bundle", base, required=True)
    _choice(section, "model", "threshold", THRESHOLDS)
    _int(section, "model", "batch_size", 1, 1 << 20)
    _int(section, "model", "batch_timeout_ms", 1, 60_000)


def _check_homes(section: dict, base: Path) -> None:
    prefixes = section["prefixes"]
    if prefixes is None:
        raise ConfigError("config key homes.prefixes is required (subscriber CIDR list)")
    if not isinstance(prefixes, list) or not prefixes:
        raise _fail("homes.prefixes", "must be a non-empty list of CIDR prefixes", prefixes)
    section["prefixes"] = tuple(parse_prefix("homes.prefixes", p) for p in prefixes)
    _int(section, "homes", "home_prefix_v4", 8, 32)
    _int(section, "homes", "home_prefix_v6", 16, 128)
    _int(section, "homes", "max_homes", 1, 1 << 24)
    _path(section, "homes", "subscribers", base)
    _path(section, "homes", "hash_key_file", base, required=True)


def parse_prefix(key: str, text: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A CIDR prefix (host bits must be zero), or ``ConfigError`` naming ``key``."""
    try:
        return ipaddress.ip_network(text, strict=True)
    except (ValueError, TypeError) as exc:
        raise _fail(key, f"is not a CIDR prefix ({exc})", text) from None


def _check_trust(section: dict) -> None:
    if section["window"] is not None:
        _number(section, "trust", "window", 0.0)
    if section["clock"] not in ("wall", "flow"):
        raise _fail("trust.clock", 'must be "wall" or "flow"', section["clock"])


def _check_upstream(section: dict, base: Path) -> None:
    url = section["url"]
    if not isinstance(url, str):
        raise _fail("upstream.url", "must be a string", url)
    if url and not url.startswith(("http://", "https://", "file://")):
        raise _fail("upstream.url", "must start with http://, https:// or file://", url)
    _path(section, "upstream", "secret_file", base, required=url.startswith("http"))
    _number(section, "upstream", "timeout", 0.0)
    _number(section, "upstream", "detection_interval", 0.0)


def _check_spool(section: dict, base: Path) -> None:
    _path(section, "spool", "path", base, required=True)
    _int(section, "spool", "max_bytes", 4096, 1 << 40)
    _choice(section, "spool", "when_full", WHEN_FULL)


def _check_metrics(section: dict) -> None:
    try:
        ipaddress.ip_address(section["address"])
    except (ValueError, TypeError):
        raise _fail("metrics.address", "must be an IP address", section["address"]) from None
    _int(section, "metrics", "port", 0, 65535)


def read_secret(path: Path, key: str = "upstream.secret_file") -> bytes:
    """The per-agent upstream secret: the file's text, surrounding whitespace removed."""
    try:
        secret = Path(path).read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"config key {key}: cannot read {path}: {exc.strerror}") from exc
    if not secret:
        raise ConfigError(f"config key {key}: {path} is empty")
    return secret


def read_or_create_hash_key(path: Path) -> bytes:
    """The key for hashing home prefixes; 32 random bytes written (mode 0600) if missing.

    The key must survive restarts, or the same home gets a new id after each one.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
    return read_secret(path, key="homes.hash_key_file")
