"""Tests of the agent's TOML configuration: defaults, checks and secret files."""

import os
import stat

import pytest

from agent.config import DEFAULTS, load_config, read_or_create_hash_key, read_secret
from agent.errors import ConfigError

MINIMAL = """
[listen]
exporters = ["192.0.2.1", "2001:db8::1"]
[model]
bundle = "bundle"
[homes]
prefixes = ["100.64.0.0/10", "2001:db8:100::/40"]
"""


def write(tmp_path, text):
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_minimal_config_gets_every_default(tmp_path):
    """A config with only the required keys takes every other value from DEFAULTS."""
    config = load_config(write(tmp_path, MINIMAL))
    assert config.listen["udp_port"] == DEFAULTS["listen"]["udp_port"]
    assert config.model["threshold"] == DEFAULTS["model"]["threshold"]
    assert config.model["batch_size"] == DEFAULTS["model"]["batch_size"]
    assert config.spool["max_bytes"] == DEFAULTS["spool"]["max_bytes"]
    assert config.spool["when_full"] == DEFAULTS["spool"]["when_full"]
    assert config.metrics["port"] == DEFAULTS["metrics"]["port"]
    assert config.trust["window"] is None
    assert config.agent["id"]


def test_paths_are_relative_to_the_config_file(tmp_path):
    """Relative paths (bundle, spool, hash key) resolve against the config's folder."""
    config = load_config(write(tmp_path, MINIMAL))
    assert config.model["bundle"] == (tmp_path / "bundle").resolve()
    assert config.spool["path"] == (tmp_path / "spool").resolve()
    assert config.homes["hash_key_file"] == (tmp_path / "hash.key").resolve()


def test_exporters_are_canonical(tmp_path):
    """Exporter addresses are stored canonically, IPv4-mapped IPv6 unmapped."""
    text = MINIMAL.replace('"2001:db8::1"', '"::ffff:198.51.100.3", "2001:DB8:0::5"')
    config = load_config(write(tmp_path, text))
    assert config.listen["exporters"] == {"192.0.2.1", "198.51.100.3", "2001:db8::5"}


@pytest.mark.parametrize(
    "extra, key",
    [
        ("[listen]\nbogus = 1\n", "listen.bogus"),
        ("[nonsense]\nx = 1\n", "[nonsense]"),
        ("[model]\nthreshold = 'lambda3'\n", "model.threshold"),
        ("[listen]\nudp_port = 70000\n", "listen.udp_port"),
        ("[spool]\nwhen_full = 'block'\n", "spool.when_full"),
        ("[upstream]\nurl = 'ftp://x'\n", "upstream.url"),
        ("[upstream]\nurl = 'https://store'\n", "upstream.secret_file"),
        ("[homes]\nhome_prefix_v6 = 200\n", "homes.home_prefix_v6"),
        ("[trust]\nwindow = -5\n", "trust.window"),
    ],
)
def test_bad_keys_and_values_name_the_key(tmp_path, extra, key):
    """Unknown keys and bad values raise ConfigError naming the key."""
    text = MINIMAL
    section = extra.split("\n", 1)[0]
    if section in text:
        text = text.replace(section, extra.rstrip("\n"))
    else:
        text += extra
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert key in str(caught.value)


@pytest.mark.parametrize("prefix", ["100.64.0.1/10", "300.1.0.0/16", "2001:db8::/129", "x"])
def test_bad_prefix_names_homes_prefixes(tmp_path, prefix):
    """A prefix that is not a clean CIDR (host bits set, out of range) names the key."""
    text = MINIMAL.replace('"100.64.0.0/10"', f'"{prefix}"')
    with pytest.raises(ConfigError, match="homes.prefixes") as caught:
        load_config(write(tmp_path, text))
    assert prefix in str(caught.value)


def test_bad_exporter_address_names_the_key(tmp_path):
    """A malformed exporter address is refused, naming listen.exporters."""
    text = MINIMAL.replace('"192.0.2.1"', '"192.0.2.300"')
    with pytest.raises(ConfigError, match="listen.exporters"):
        load_config(write(tmp_path, text))


def test_missing_required_keys(tmp_path):
    """exporters, bundle and prefixes are required, each error naming its key."""
    for line, key in (
        ('exporters = ["192.0.2.1", "2001:db8::1"]', "listen.exporters"),
        ('bundle = "bundle"', "model.bundle"),
        ('prefixes = ["100.64.0.0/10", "2001:db8:100::/40"]', "homes.prefixes"),
    ):
        with pytest.raises(ConfigError, match=key):
            load_config(write(tmp_path, MINIMAL.replace(line, "")))


def test_invalid_toml_and_missing_file(tmp_path):
    """Unparseable TOML and a missing file are ConfigErrors naming the file."""
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[listen\n"))
    with pytest.raises(ConfigError, match="nowhere.toml"):
        load_config(tmp_path / "nowhere.toml")


def test_hash_key_is_created_once_private(tmp_path):
    """A missing hash key file is created with mode 0600 and then read back unchanged."""
    path = tmp_path / "keys" / "hash.key"
    first = read_or_create_hash_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(first) == 64
    assert read_or_create_hash_key(path) == first


def test_secret_file_checks(tmp_path):
    """A secret is the stripped file text; an empty or missing file is a ConfigError."""
    path = tmp_path / "secret"
    path.write_text("  s3cret\n")
    assert read_secret(path) == b"s3cret"
    path.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        read_secret(path)
    with pytest.raises(ConfigError, match="upstream.secret_file"):
        read_secret(tmp_path / "absent")


def test_trust_clock_is_wall_or_flow(tmp_path):
    """trust.clock takes "wall" (default) or "flow"; anything else names the key."""
    from agent.config import load_config

    base = tmp_path / "agent.toml"
    body = (
        '[listen]\nexporters = ["127.0.0.1"]\n[model]\nbundle = "b"\n'
        '[homes]\nprefixes = ["100.64.0.0/10"]\n'
    )
    base.write_text(body)
    assert load_config(base).trust["clock"] == "wall"
    base.write_text(body + '[trust]\nclock = "flow"\n')
    assert load_config(base).trust["clock"] == "flow"
    base.write_text(body + '[trust]\nclock = "sundial"\n')
    with pytest.raises(ConfigError, match="trust.clock"):
        load_config(base)
