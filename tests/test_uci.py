"""OpenWrt UCI files become agent TOML configs that agent.config loads; bad options are named."""

import tomllib
from pathlib import Path

import pytest

from agent import uci
from agent.cli import uci as uci_cli
from agent.config import load_config
from agent.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "openwrt" / "files" / "iotwatch.config"

ROUTER = """
package iotwatch

# a router exporting its own flows and one BNG
config agent 'main'
	option enabled '1'
	option agent_id "bng-07 \\"north\\""
	option log_level 'DEBUG'
	option listen_address '::'
	option udp_port '4739'
	option tcp_port 0
	list exporter '10.0.0.1'
	list exporter '2001:db8::1'
	option bundle '/usr/share/iotwatch/model'
	option threshold 'lambda2'
	list subscriber_prefix '100.64.0.0/10'
	list subscriber_prefix '2001:db8:100::/40'
	option home_prefix_v6 '56'
	option window '600'
	option upstream_url 'https://store.example.net'
	option secret_file '/etc/iotwatch/secret'
	option spool_path '/var/spool/iotwatch'
	option spool_size '1048576'
	option metrics_port '9470'
	option hash_key_file '/etc/iotwatch/hash.key'
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "iotwatch"
    path.write_text(text)
    return path


def test_router_file_becomes_the_expected_toml(tmp_path):
    """Every option lands under its TOML key with the right type; unset ones are left out."""
    toml = tomllib.loads(uci.uci_file_to_toml(_write(tmp_path, ROUTER)))
    assert toml["agent"] == {"id": 'bng-07 "north"', "log_level": "DEBUG"}
    assert toml["listen"] == {
        "address": "::",
        "udp_port": 4739,
        "tcp_port": 0,
        "exporters": ["10.0.0.1", "2001:db8::1"],
    }
    assert toml["model"] == {"bundle": "/usr/share/iotwatch/model", "threshold": "lambda2"}
    assert toml["homes"]["prefixes"] == ["100.64.0.0/10", "2001:db8:100::/40"]
    assert toml["homes"]["home_prefix_v6"] == 56 and "home_prefix_v4" not in toml["homes"]
    assert toml["trust"] == {"window": 600.0}
    assert toml["upstream"]["url"] == "https://store.example.net"
    assert toml["spool"] == {"path": "/var/spool/iotwatch", "max_bytes": 1048576}
    assert toml["metrics"] == {"port": 9470}


def test_generated_file_loads_with_agent_config(tmp_path):
    """The CLI's output file is accepted by agent.config.load_config with the same values."""
    out = tmp_path / "etc" / "agent.toml"
    assert uci_cli.main([str(_write(tmp_path, ROUTER)), "--output", str(out)]) == 0
    config = load_config(out)
    assert config.listen["exporters"] == frozenset({"10.0.0.1", "2001:db8::1"})
    assert config.model["threshold"] == "lambda2"
    assert config.spool["max_bytes"] == 1048576
    assert oct(out.stat().st_mode & 0o777) == "0o640"


def test_shipped_config_is_disabled_and_converts(tmp_path):
    """The package's UCI file ships disabled and still converts to a loadable config."""
    section = uci.agent_section(uci.parse_uci(SHIPPED.read_text()), str(SHIPPED))
    assert uci.is_enabled(section) is False
    out = tmp_path / "agent.toml"
    out.write_text(uci.uci_file_to_toml(SHIPPED))
    assert load_config(out).listen["udp_port"] == 4739


def test_shipped_config_sets_every_option():
    """The shipped file lists every option the converter knows, so users see them all."""
    section = uci.agent_section(uci.parse_uci(SHIPPED.read_text()), str(SHIPPED))
    assert set(section.options) == set(uci.OPTIONS)


@pytest.mark.parametrize(
    ("line", "option"),
    [
        ("option udp_port '70000'", "udp_port"),
        ("option tcp_port 'http'", "tcp_port"),
        ("list exporter '10.0.0.300'", "exporter"),
        ("list subscriber_prefix '10.0.0.1/8'", "subscriber_prefix"),
        ("option threshold 'lambda3'", "threshold"),
        ("option window '-5'", "window"),
        ("option spool_path 'relative/spool'", "spool_path"),
        ("option upstream_url 'ftp://store'", "upstream_url"),
        ("option log_level 'loud'", "log_level"),
        ("option enabled 'maybe'", "enabled"),
        ("option bogus '1'", "bogus"),
        ("list udp_port '1'", "udp_port"),
    ],
)
def test_invalid_option_is_named_with_its_line(tmp_path, line, option, capsys):
    """A bad value (or unknown option) exits non-zero naming the option and its line."""
    text = ROUTER + "\t" + line + "\n"
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=option) as caught:
        uci.uci_file_to_toml(path)
    assert f":{len(text.splitlines())}:" in str(caught.value)

    assert uci_cli.main([str(path), "-o", str(tmp_path / "out.toml")]) == 1
    assert option in capsys.readouterr().err
    assert not (tmp_path / "out.toml").exists()


def test_missing_required_option_is_named_in_uci_words(tmp_path):
    """A required key checked by agent.config is reported by its UCI option name."""
    text = "\n".join(line for line in ROUTER.splitlines() if "subscriber_prefix" not in line)
    with pytest.raises(ConfigError, match="option subscriber_prefix is required"):
        uci.uci_file_to_toml(_write(tmp_path, text))


def test_https_upstream_without_secret_is_refused(tmp_path):
    """agent.config's cross-key rule (an http(s) store needs a secret) surfaces here too."""
    text = "\n".join(line for line in ROUTER.splitlines() if "secret_file" not in line)
    with pytest.raises(ConfigError, match="option secret_file"):
        uci.uci_file_to_toml(_write(tmp_path, text))


def test_quoting_and_comments_follow_uci_syntax():
    """Single, double and concatenated quotes and trailing comments parse as UCI writes them."""
    sections = uci.parse_uci(
        "config agent main  # the only one\n"
        "\toption agent_id 'it'\\''s'\n"
        '\toption spool_path "/var/spool/a b"\n'
        "\toption exporter '10.0.0.1 10.0.0.2'\n"
    )
    options = sections[0].options
    assert sections[0].name == "main"
    assert options["agent_id"] == "it's"
    assert options["spool_path"] == "/var/spool/a b"
    exporters = uci._convert("exporter", uci.OPTIONS["exporter"], options["exporter"], "x")
    assert exporters == ["10.0.0.1", "10.0.0.2"]


@pytest.mark.parametrize(
    "text",
    [
        "option udp_port '1'\n",
        "config agent 'main'\n\toption udp_port\n",
        "config agent 'main'\n\toption 'udp port' '1'\n",
        "config agent 'main'\n\toption udp_port 'unterminated\n",
        "config agent 'a'\nconfig agent 'b'\n",
    ],
)
def test_malformed_files_are_refused(tmp_path, text):
    """Syntax errors and ambiguous sections raise ConfigError naming the file."""
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=str(path)):
        uci.uci_file_to_toml(path)


def test_toml_strings_escape_what_toml_requires():
    """Quotes, backslashes and control characters survive a TOML round trip."""
    value = 'a"b\\c\td\x7fe\u00e9'
    text = uci.to_toml({"agent": {"id": value, "n": 3, "on": True, "xs": ["p", "q"]}})
    assert tomllib.loads(text)["agent"] == {"id": value, "n": 3, "on": True, "xs": ["p", "q"]}
