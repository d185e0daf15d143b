"""OpenWrt's UCI configuration turned into the agent's TOML configuration.

On a router the agent is configured like every other service, in ``/etc/config/iotwatch``
(one ``config agent`` section, see ``openwrt/files/iotwatch.config``). The init script
calls ``python -m agent uci`` to write the TOML file ``python -m agent run`` reads. Each
UCI option maps to one TOML key (``OPTIONS``); values are checked here, naming the UCI
option and its line, and then once more by ``agent.config`` so both files agree on what is
valid. Unset or empty options are left out: their defaults live in ``agent.config`` only.
"""

import copy
import ipaddress
import json
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from agent.config import build_config
from agent.errors import ConfigError

SECTION_TYPE = "agent"
BOOL_TRUE = ("1", "yes", "on", "true", "enabled")
BOOL_FALSE = ("0", "no", "off", "false", "disabled")


@dataclass(frozen=True)
class Option:
    """One UCI option: the TOML key it sets, its kind and, for numbers, its bounds."""

    key: str
    kind: str
    low: float = 0
    high: float = 0
    choices: tuple[str, ...] = ()
    is_list: bool = False


# UCI option -> TOML key. ``enabled`` belongs to the init script and is not passed on.
OPTIONS: dict[str, Option] = {
    "enabled": Option("", "bool"),
    "agent_id": Option("agent.id", "string"),
    "log_level": Option(
        "agent.log_level", "choice", choices=("debug", "info", "warning", "error")
    ),
    "listen_address": Option("listen.address", "address"),
    "udp_port": Option("listen.udp_port", "int", 0, 65535),
    "tcp_port": Option("listen.tcp_port", "int", 0, 65535),
    "exporter": Option("listen.exporters", "address", is_list=True),
    "template_lifetime": Option("listen.template_lifetime", "float", 0, math.inf),
    "bundle": Option("model.bundle", "path"),
    "threshold": Option("model.threshold", "choice", choices=("lambda1", "lambda2")),
    "batch_size": Option("model.batch_size", "int", 1, 1 << 20),
    "batch_timeout_ms": Option("model.batch_timeout_ms", "int", 1, 60_000),
    "subscriber_prefix": Option("homes.prefixes", "cidr", is_list=True),
    "home_prefix_v4": Option("homes.home_prefix_v4", "int", 8, 32),
    "home_prefix_v6": Option("homes.home_prefix_v6", "int", 16, 128),
    "subscribers": Option("homes.subscribers", "path"),
    "hash_key_file": Option("homes.hash_key_file", "path"),
    "max_homes": Option("homes.max_homes", "int", 1, 1 << 24),
    "window": Option("trust.window", "float", 0, math.inf),
    "upstream_url": Option("upstream.url", "url"),
    "secret_file": Option("upstream.secret_file", "path"),
    "upstream_timeout": Option("upstream.timeout", "float", 0, math.inf),
    "detection_interval": Option("upstream.detection_interval", "float", 0, math.inf),
    "spool_path": Option("spool.path", "path"),
    "spool_size": Option("spool.max_bytes", "int", 4096, 1 << 40),
    "spool_when_full": Option("spool.when_full", "choice", choices=("drop-oldest", "drop-newest")),
    "metrics_address": Option("metrics.address", "address"),
    "metrics_port": Option("metrics.port", "int", 0, 65535),
}


@dataclass
class Section:
    """One ``config TYPE 'NAME'`` block: its options (lists as lists) and their lines."""

    type: str
    name: str | None
    line: int
    options: dict[str, str | list[str]] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)


def parse_uci(text: str, source: str = "<uci>") -> list[Section]:
    """Parse UCI's ``package``/``config``/``option``/``list`` syntax with shell quoting."""
    sections: list[Section] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        where = f"{source}:{number}"
        try:
            words = shlex.split(raw, comments=True)
        except ValueError as exc:
            raise ConfigError(f"{where}: cannot parse line ({exc})") from None
        if not words:
            continue

        keyword, args = words[0], words[1:]
        if keyword == "package" and len(args) == 1:
            continue
        if keyword == "config" and len(args) in (1, 2):
            sections.append(Section(args[0], args[1] if len(args) == 2 else None, number))
            continue
        if keyword not in ("option", "list") or len(args) != 2:
            raise ConfigError(f"{where}: expected 'config', 'option' or 'list', got {raw!r}")
        if not sections:
            raise ConfigError(f"{where}: {keyword} {args[0]} before any 'config' line")
        name, value = args
        if not name.replace("_", "").isalnum():
            raise ConfigError(f"{where}: bad option name {name!r}")

        section = sections[-1]
        if keyword == "list":
            previous = section.options.get(name, [])
            section.options[name] = (previous if isinstance(previous, list) else []) + [value]
        else:
            section.options[name] = value
        section.lines[name] = number
    return sections


def agent_section(sections: list[Section], source: str, name: str | None = None) -> Section:
    """The one ``config agent`` section (or the one called ``name``)."""
    found = [s for s in sections if s.type == SECTION_TYPE and (name is None or s.name == name)]
    if len(found) != 1:
        which = f"named {name!r}" if name else f"of type {SECTION_TYPE!r}"
        raise ConfigError(
            f"{source}: expected one 'config {SECTION_TYPE}' section {which}, found {len(found)}"
        )
    return found[0]


def is_enabled(section: Section, source: str = "<uci>") -> bool:
    """The section's ``enabled`` option (off when unset, as the package ships)."""
    value = section.options.get("enabled", "0")
    return bool(_convert("enabled", OPTIONS["enabled"], value, source))


def section_to_config(section: Section, source: str = "<uci>") -> dict:
    """The TOML mapping (section -> key -> value) for a UCI section; ConfigError if bad."""
    raw: dict[str, dict] = {}
    for name, value in section.options.items():
        where = f"{source}:{section.lines[name]}"
        option = OPTIONS.get(name)
        if option is None:
            raise ConfigError(f"{where}: unknown option {name!r} in config {SECTION_TYPE}")
        converted = _convert(name, option, value, where)
        if not option.key or converted is None:
            continue
        table, key = option.key.split(".")
        raw.setdefault(table, {})[key] = converted

    try:
        build_config(copy.deepcopy(raw), base=Path("/"))
    except ConfigError as exc:
        raise ConfigError(f"{source}: {_uci_words(str(exc))}") from None
    return raw


def _uci_words(message: str) -> str:
    """Name UCI options where ``agent.config`` names TOML keys."""
    for name, option in OPTIONS.items():
        if option.key and f"config key {option.key}" in message:
            return message.replace(f"config key {option.key}", f"option {name}")
    return message


def _convert(name: str, option: Option, value: str | list[str], where: str):
    """Check and convert one option's value; ``None`` for an empty (unset) one."""
    values = value if isinstance(value, list) else value.split()
    if not option.is_list:
        if isinstance(value, list):
            raise ConfigError(f"{where}: option {name} takes one value, given as a list")
        values = [value.strip()] if value.strip() else []
    if not values:
        return None

    try:
        converted = [_one(option, text) for text in values]
    except ValueError as exc:
        raise ConfigError(f"{where}: option {name}: {exc}") from None
    return converted if option.is_list else converted[0]


def _one(option: Option, text: str):
    """One scalar value of ``option``'s kind; ValueError saying what was expected."""
    kind = option.kind
    if kind == "string":
        return text
    if kind == "bool":
        if text.lower() in BOOL_TRUE + BOOL_FALSE:
            return text.lower() in BOOL_TRUE
        raise ValueError(f"must be 0 or 1 (got {text!r})")
    if kind == "choice":
        if text.lower() in option.choices:
            return text.upper() if option.key == "agent.log_level" else text.lower()
        raise ValueError(f"must be one of {', '.join(option.choices)} (got {text!r})")
    if kind in ("int", "float"):
        return _number(option, text)
    if kind == "address":
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            raise ValueError(f"must be an IP address (got {text!r})") from None
    if kind == "cidr":
        try:
            return str(ipaddress.ip_network(text, strict=True))
        except ValueError as exc:
            raise ValueError(f"must be a CIDR prefix ({exc})") from None
    if kind == "path":
        if not text.startswith("/"):
            raise ValueError(f"must be an absolute path (got {text!r})")
        return text
    if kind == "url":
        if not text.startswith(("http://", "https://", "file://")):
            raise ValueError(f"must start with http://, https:// or file:// (got {text!r})")
        return text
    raise ValueError(f"unknown kind {kind}")


def _number(option: Option, text: str) -> int | float:
    """An integer or a positive finite number within the option's bounds."""
    try:
        number = int(text, 10) if option.kind == "int" else float(text)
    except ValueError:
        raise ValueError(
            f"must be {'an integer' if option.kind == 'int' else 'a number'} (got {text!r})"
        ) from None
    if option.kind == "float" and not (math.isfinite(number) and number > option.low):
        raise ValueError(f"must be a number above {option.low:g} (got {text!r})")
    if option.kind == "int" and not option.low <= number <= option.high:
        raise ValueError(f"must be in [{option.low}, {option.high}] (got {text!r})")
    return number


def to_toml(config: dict, header: str = "") -> str:
    """Write a two-level mapping of strings, numbers, booleans and lists as TOML."""
    lines = [f"# {line}" for line in header.splitlines()]
    for table, keys in config.items():
        lines += ["", f"[{table}]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in keys.items()]
    return "\n".join(lines).lstrip("\n") + "\n"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def uci_file_to_toml(path: Path, section_name: str | None = None) -> str:
    """Read a UCI file and return the agent's TOML config text for its agent section."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {source}: {exc}") from None
    section = agent_section(parse_uci(text, source), source, section_name)
    config = section_to_config(section, source)
    header = f"Generated from {source} by 'python -m agent uci'; edit that file instead."
    return to_toml(config, header)
