"""What the store is told at start: agents with their secrets, and the known device types.

The agents file is TOML, one table per agent (docs/interfaces.md section 8):

    [agents."bng-01"]
    secret = "..."            # or secret_file = "/path" (relative to the agents file)

A secret is the UTF-8 bytes of the string, or of the file's content with surrounding
whitespace removed. Device types come from a model bundle's manifest.json ("classes") or
from a text file with one type per line (blank lines and lines starting with # skipped).
"""

import json
import logging
import tomllib
from pathlib import Path

from store.errors import ConfigError

log = logging.getLogger(__name__)

MAX_AGENT_ID = 128
MIN_SECRET_BYTES = 16


def load_agents(path: str | Path) -> dict[str, bytes]:
    """Agent id -> secret bytes from an agents file; raises ConfigError naming the key."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read agents file: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc

    unknown = set(doc) - {"agents"}
    if unknown:
        raise ConfigError(f"{path}: unknown key {min(unknown)!r}")
    agents = doc.get("agents", {})
    if not isinstance(agents, dict) or not agents:
        raise ConfigError(f'{path}: no [agents."<id>"] table')

    secrets = {}
    for agent_id, entry in agents.items():
        where = f"{path}: agents.{agent_id!r}"
        if not agent_id or len(agent_id) > MAX_AGENT_ID:
            raise ConfigError(f"{where}: agent id must be 1..{MAX_AGENT_ID} characters")
        secrets[agent_id] = _secret(entry, where, path.parent)
    return secrets


def _secret(entry: object, where: str, base: Path) -> bytes:
    """The secret of one agents-file entry."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a table with secret or secret_file")
    unknown = set(entry) - {"secret", "secret_file"}
    if unknown:
        raise ConfigError(f"{where}: unknown key {min(unknown)!r}")
    if ("secret" in entry) == ("secret_file" in entry):
        raise ConfigError(f"{where}: give exactly one of secret, secret_file")

    if "secret" in entry:
        if not isinstance(entry["secret"], str):
            raise ConfigError(f"{where}.secret: must be a string")
        secret = entry["secret"].encode("utf-8")
    else:
        if not isinstance(entry["secret_file"], str):
            raise ConfigError(f"{where}.secret_file: must be a string")
        file = base / entry["secret_file"]
        try:
            secret = file.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"{where}.secret_file: cannot read {file}: {exc.strerror}")

    if not secret:
        raise ConfigError(f"{where}: empty secret")
    if len(secret) < MIN_SECRET_BYTES:
        log.warning(
            "weak secret agent=%s bytes=%d (use at least %d)", where, len(secret), MIN_SECRET_BYTES
        )
    return secret


def load_device_types(path: str | Path) -> frozenset[str]:
    """Known device types from a bundle folder, its manifest.json, or a text file."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.json"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read device types: {exc}") from exc

    if path.suffix == ".json":
        try:
            classes = json.loads(text)["classes"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f'{path}: no "classes" list in the manifest') from exc
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise ConfigError(f'{path}: "classes" must be a list of strings')
    else:
        lines = (line.strip() for line in text.splitlines())
        classes = [line for line in lines if line and not line.startswith("#")]

    types = frozenset(c for c in classes if c)
    if not types:
        raise ConfigError(f"{path}: no device types")
    return types
