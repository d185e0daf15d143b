"""The OpenWrt package files hold together without a router: init script, UCI file, unit."""

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import require_tool

from agent import uci

ROOT = Path(__file__).resolve().parent.parent
OPENWRT = ROOT / "openwrt"
INIT = OPENWRT / "files" / "iotwatch.init"
CONFIG = OPENWRT / "files" / "iotwatch.config"
UNIT = OPENWRT / "systemd" / "iotwatch-agent.service"

# Stand-ins for OpenWrt's rc.common/procd shell functions: each call is logged, and
# uci_load_validate sets the options as shell variables the way validate_data does.
HARNESS = r"""
set -u
. "$INIT"
PROG="$PY"; UCI_FILE="$WORK/iotwatch"; CONF_DIR="$WORK/var/etc"; CONF_FILE="$CONF_DIR/agent.toml"
log() { printf '%s\n' "$*" >> "$WORK/calls"; }
chown() { log chown "$@"; }
chgrp() { log chgrp "$@"; }
config_load() { log config_load "$@"; }
uci_load_validate() {
	log validate "$1" "$2" "$3"
	_name="$3" _fn="$4"
	shift 4
	for spec in "$@"; do log spec "$spec"; done
	. "$WORK/options.sh"
	"$_fn" "$_name" "$RESULT"
}
procd_open_instance() { log open_instance "$@"; }
procd_set_param() { log param "$@"; }
procd_close_instance() { log close_instance; }
procd_running() { [ "$RUNNING" = 1 ]; }
procd_send_signal() { log signal "$@"; }
procd_add_reload_trigger() { log reload_trigger "$@"; }
procd_add_validation() { log add_validation "$@"; }
start() { log start; }
stop() { log stop; }
"""


def _spec_from_init() -> dict[str, str]:
    """The init script's validation spec: option name -> validate_data type."""
    specs = re.findall(r"^\s*'([a-z0-9_]+):([^'\n]*)'", INIT.read_text(), flags=re.MULTILINE)
    return {name: kind.split(":")[0] for name, kind in specs}


def _run_init(tmp_path: Path, action: str, *, enabled="1", result="0", running="0", **edit):
    """Run one init-script entry point under the harness; its exit code and call log."""
    options = uci.agent_section(uci.parse_uci(CONFIG.read_text()), str(CONFIG)).options
    options = {**options, "enabled": enabled, **edit}
    options["spool_path"] = str(tmp_path / "spool")
    options["hash_key_file"] = str(tmp_path / "keys" / "hash.key")
    lines = ["config agent 'main'"]
    shell = []
    for name, value in options.items():
        values = value if isinstance(value, list) else [value]
        keyword = "list" if isinstance(value, list) else "option"
        lines += [f"\t{keyword} {name} {shlex.quote(v)}" for v in values]
        shell.append(f"{name}={shlex.quote(' '.join(values))}")
    (tmp_path / "iotwatch").write_text("\n".join(lines) + "\n")
    (tmp_path / "options.sh").write_text("\n".join(shell) + "\n")

    env = {
        "INIT": str(INIT),
        "PY": sys.executable,
        "WORK": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        "RESULT": result,
        "RUNNING": running,
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.run(
        ["sh", "-c", HARNESS + f"\n{action}"],
        check=False,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
    return proc, calls


def test_init_script_is_valid_sh():
    """`sh -n` (and dash, OpenWrt's ash relative) accept the init script."""
    for shell in ("sh", "dash"):
        require_tool(shell)
        proc = subprocess.run(
            [shell, "-n", str(INIT)], check=False, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
    assert INIT.read_text().startswith("#!/bin/sh /etc/rc.common\n")
    assert INIT.stat().st_mode & 0o111


def test_validation_spec_covers_every_config_option():
    """Every option of the shipped UCI file is validated, and no other one."""
    shipped = uci.agent_section(uci.parse_uci(CONFIG.read_text()), str(CONFIG)).options
    spec = _spec_from_init()
    assert set(spec) == set(shipped) == set(uci.OPTIONS)


def test_validation_types_agree_with_the_converter():
    """Lists are validated as lists, numbers as numbers, choices with the same values."""
    spec = _spec_from_init()
    for name, option in uci.OPTIONS.items():
        kind = spec[name]
        assert kind.startswith("list(") == option.is_list, name
        if option.kind == "int":
            assert kind in ("port", "uinteger") or kind.startswith("range("), name
        if option.kind == "float":
            assert kind == "ufloat", name
        if option.kind == "choice":
            assert sorted(re.findall(r'"([^"]+)"', kind)) == sorted(option.choices), name
        if option.kind == "address":
            assert "ipaddr" in kind, name
        if option.kind == "cidr":
            assert "cidr" in kind, name


def test_start_writes_config_and_runs_agent_unprivileged(tmp_path):
    """An enabled service writes the TOML and starts a respawning agent as user iotwatch."""
    proc, calls = _run_init(tmp_path, "start_service")
    assert proc.returncode == 0, proc.stderr

    toml = tomllib.loads((tmp_path / "var/etc/agent.toml").read_text())
    assert toml["spool"]["path"] == str(tmp_path / "spool")
    assert (tmp_path / "spool").is_dir() and (tmp_path / "keys").is_dir()
    assert "open_instance agent" in calls
    command = next(c for c in calls if c.startswith("param command"))
    assert command.endswith(f"-m agent run --config {tmp_path}/var/etc/agent.toml")
    for expected in ("param user iotwatch", "param stdout 1", "param stderr 1"):
        assert expected in calls
    assert any(c.startswith("param respawn") for c in calls)
    assert f"param file {tmp_path}/var/etc/agent.toml" in calls
    assert f"chown iotwatch:iotwatch {tmp_path}/spool {tmp_path}/keys" in calls


def test_disabled_service_starts_nothing(tmp_path):
    """The shipped state (enabled 0) validates and starts no instance."""
    proc, calls = _run_init(tmp_path, "start_service", enabled="0")
    assert proc.returncode == 0, proc.stderr
    assert not any(c.startswith("open_instance") for c in calls)


def test_failed_validation_starts_nothing(tmp_path):
    """A validate_data failure is reported and no instance is opened."""
    proc, calls = _run_init(tmp_path, "start_service", result="1")
    assert "validation of config main failed" in proc.stderr
    assert not any(c.startswith("open_instance") for c in calls)


def test_bad_option_stops_the_start_naming_it(tmp_path):
    """A value only the agent's checks catch (host bits set) stops the start, named."""
    proc, calls = _run_init(tmp_path, "start_service", subscriber_prefix=["10.0.0.1/8"])
    assert "subscriber_prefix" in proc.stderr
    assert not any(c.startswith("open_instance") for c in calls)
    assert not (tmp_path / "var/etc/agent.toml").exists()


def test_reload_with_unchanged_options_sends_sighup(tmp_path):
    """Reload with the same options (a new bundle in place) signals the agent with HUP."""
    proc, calls = _run_init(
        tmp_path, "start_service && : > $WORK/calls && reload_service", running="1"
    )
    assert proc.returncode == 0, proc.stderr
    assert "signal iotwatch agent HUP" in calls
    assert "start" not in calls


def test_reload_with_changed_options_restarts(tmp_path):
    """Options the agent only reads at start (a port) make reload start it anew, no HUP."""
    _run_init(tmp_path, "start_service", running="1")
    proc, calls = _run_init(tmp_path, "reload_service", running="1", udp_port="4740")
    assert proc.returncode == 0, proc.stderr
    assert "start" in calls
    assert not any(c.startswith("signal") for c in calls)
    toml = tomllib.loads((tmp_path / "var/etc/agent.toml").read_text())
    assert toml["listen"]["udp_port"] == 4740


def test_reload_when_disabled_stops(tmp_path):
    """Reload after setting enabled 0 stops the service instead of signalling it."""
    _, calls = _run_init(tmp_path, "reload_service", running="1", enabled="0")
    assert "stop" in calls and not any(c.startswith("signal") for c in calls)


def test_service_triggers_reload_on_config_change(tmp_path):
    """service_triggers registers the UCI reload trigger and the validation."""
    proc = subprocess.run(
        ["sh", "-c", HARNESS + "\nservice_triggers"],
        check=False,
        capture_output=True,
        text=True,
        env={"INIT": str(INIT), "WORK": str(tmp_path), "PY": sys.executable, "PATH": "/bin"},
    )
    calls = (tmp_path / "calls").read_text().splitlines()
    assert "reload_trigger iotwatch" in calls, proc.stderr
    assert "add_validation validate_iotwatch_section" in calls


def test_makefile_follows_feed_conventions():
    """Python package rules, the feed's dependencies, conffiles and the service user."""
    text = (OPENWRT / "Makefile").read_text()
    assert "include $(TOPDIR)/rules.mk" in text
    assert "include ../../lang/python/python3-package.mk" in text
    for dep in ("+python3-light", "+python3-numpy", "+python3-cffi", "+python3-msgpack"):
        assert dep in text
    assert re.search(r"define Package/iotwatch/conffiles\n/etc/config/iotwatch\n", text)
    assert "USERID:=iotwatch" in text
    assert "$(eval $(call BuildPackage,iotwatch))" in text
    for name in ("iotwatch.config", "iotwatch.init", "iotwatch.keep"):
        assert f"./files/{name}" in text and (OPENWRT / "files" / name).exists()


def _unit() -> dict[str, str]:
    """The systemd unit's [Service] keys (last value wins, as systemd reads them)."""
    keys, section = {}, None
    for line in UNIT.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and not line.startswith("#") and section == "Service":
            key, value = line.split("=", 1)
            keys[key] = value
    return keys


def test_systemd_unit_is_hardened():
    """Dedicated user, no new privileges, read-only system but the spool, reload by HUP."""
    keys = _unit()
    assert keys["User"] == "iotwatch"
    assert keys["NoNewPrivileges"] == "yes"
    assert keys["ProtectSystem"] == "strict"
    assert keys["ReadWritePaths"] == "/var/lib/iotwatch/spool"
    assert keys["PrivateTmp"] == "yes"
    assert keys["Restart"] == "on-failure"
    assert "-HUP" in keys["ExecReload"]
    assert keys["ExecStart"].endswith("-m agent run --config /etc/iotwatch/agent.toml")


def test_systemd_unit_verifies():
    """systemd-analyze accepts the unit (when systemd is installed)."""
    tool = require_tool("systemd-analyze")
    proc = subprocess.run([tool, "verify", str(UNIT)], check=False, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "iotwatch-agent.service" not in proc.stderr


@pytest.mark.parametrize("path", [INIT, CONFIG, UNIT, OPENWRT / "Makefile"])
def test_package_files_have_no_trailing_whitespace(path):
    """No trailing whitespace (OpenWrt's checks reject it) and a final newline."""
    text = path.read_text()
    assert text.endswith("\n")
    assert not [n for n, line in enumerate(text.splitlines(), 1) if line != line.rstrip()]


def _define(text: str, name: str) -> str:
    """One ``define NAME ... endef`` block of a Makefile, as written."""
    found = re.search(rf"^define {re.escape(name)}\n.*?^endef\n", text, re.DOTALL | re.MULTILINE)
    assert found, name
    return found.group(0)


def test_makefile_builds_both_helpers_that_then_import(tmp_path):
    """The package's compile recipe, run by make with the host's compiler standing in for
    the SDK's, installs the agent without build leftovers and with both C helpers, and
    the installed agent imports them (so it does not fall back to numpy)."""
    import sysconfig

    require_tool("make")
    text = (OPENWRT / "Makefile").read_text()
    build = tmp_path / "build"
    build.mkdir()
    subprocess.run(["cp", "-r", str(ROOT / "agent"), str(build)], check=True)
    for leftover in build.rglob("*.so"):
        leftover.unlink()
    makefile = tmp_path / "Makefile"
    makefile.write_text(
        "\n".join(
            [
                f"PKG_BUILD_DIR:={build}",
                f"PKG_INSTALL_DIR:={tmp_path / 'install'}",
                "PYTHON3_PKG_DIR:=/usr/lib/python3/site-packages",
                f"HOST_PYTHON3_BIN:={sys.executable}",
                f"PYTHON3_INC_DIR:={sysconfig.get_paths()['include']}",
                "TARGET_CC:=gcc",
                "FPIC:=-fPIC",
                "INSTALL_DIR:=install -d -m0755",
                "CP:=cp -fpR",
                "FIND:=find",
                text[text.index("AGENT_DIR:=") :].split("\n", 1)[0],
                _define(text, "Build/Helper"),
                _define(text, "Build/Compile"),
                "all:",
                "\t$(call Build/Compile)",
                "",
            ]
        )
    )
    proc = subprocess.run(
        ["make", "-f", str(makefile)], check=False, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]

    site = tmp_path / "install" / "usr/lib/python3/site-packages"
    installed = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.so"))
    assert installed == ["agent/_kernels.so", "agent/ipfix/_native.so"]
    assert not list(site.rglob("*.c")) and not list(site.rglob("*_build.py"))
    code = (
        "import agent.kernels, agent.ipfix.flowplan as f, agent.features as x;"
        "assert agent.kernels.kernels is not None and f._native is not None;"
        "print(agent.kernels.kernels.__file__)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=tmp_path, capture_output=True, text=True,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == str(site / "agent" / "_kernels.so")
