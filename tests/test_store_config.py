"""The store's configuration: agents file secrets and the known device types."""

import json

import pytest

from store.config import load_agents, load_device_types
from store.errors import ConfigError


def test_agents_file_with_inline_and_file_secrets(tmp_path):
    """Secrets come inline or from a file relative to the agents file, stripped."""
    (tmp_path / "bng-02.secret").write_text("  file-secret-0123456789abcdef\n")
    path = tmp_path / "agents.toml"
    path.write_text(
        '[agents."bng-01"]\nsecret = "inline-secret-0123456789"\n'
        '[agents."bng-02"]\nsecret_file = "bng-02.secret"\n'
    )
    assert load_agents(path) == {
        "bng-01": b"inline-secret-0123456789",
        "bng-02": b"file-secret-0123456789abcdef",
    }


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[agents.a]\nsecret = 'x'\nsecret_file = 'y'\n", "exactly one"),
        ("[agents.a]\n", "exactly one"),
        ("[agents.a]\nsecret = ''\n", "empty secret"),
        ("[agents.a]\nsecret = 5\n", "must be a string"),
        ("[agents.a]\nsecret = 'x'\ncolour = 'red'\n", "colour"),
        ("[servers.a]\nsecret = 'x'\n", "servers"),
        ("", "no [agents"),
        ("[agents.a\n", "not valid TOML"),
        ("[agents.a]\nsecret_file = 'missing.secret'\n", "cannot read"),
    ],
)
def test_bad_agents_file_names_the_problem(tmp_path, text, needle):
    """A bad agents file is refused with a message naming the key or fault."""
    path = tmp_path / "agents.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="agents|TOML") as caught:
        load_agents(path)
    assert needle in str(caught.value)


def test_device_types_from_bundle_and_text(tmp_path):
    """Device types come from a bundle manifest's classes or a one-per-line file."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps({"classes": ["Echo", "Hue"]}))
    assert load_device_types(bundle) == {"Echo", "Hue"}
    assert load_device_types(bundle / "manifest.json") == {"Echo", "Hue"}

    text = tmp_path / "types.txt"
    text.write_text("# known types\nEcho\n\n  Wemo switch  \n")
    assert load_device_types(text) == {"Echo", "Wemo switch"}


@pytest.mark.parametrize(
    "content", ['{"labels": []}', '{"classes": [1, 2]}', "not json", '{"classes": []}']
)
def test_bad_manifest_is_refused(tmp_path, content):
    """A manifest without a usable classes list is refused."""
    path = tmp_path / "manifest.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match="manifest|classes|device types"):
        load_device_types(path)


def test_serve_with_a_bad_agents_file_exits_with_a_message(tmp_path, capsys):
    """``serve`` refuses to start on a bad agents file, naming the problem."""
    from store.__main__ import main

    path = tmp_path / "agents.toml"
    path.write_text("[agents.a]\nsecret = 5\n")
    assert main(["serve", "--agents", str(path), "--db", f"sqlite:///{tmp_path}/s.db"]) == 2
    assert "secret: must be a string" in capsys.readouterr().err
