"""Helpers for the end-to-end demo: an agents file for one agent, the store running
in-process while the agent sends to it, and a closing line saying where to look.

    secret = write_agents_file(out / "agents.toml", "demo-agent", out / "agent.secret")
    server = start_store(f"sqlite:///{out}/store.db", out / "agents.toml", bundle=bundle)
    ... run the agent with upstream.url = server.url, secret_file = out / "agent.secret"
    server.stop()
    print(fill_report(f"sqlite:///{out}/store.db", out / "agents.toml"))
"""

import secrets as random_secrets
from pathlib import Path

from store import queries
from store.app import DEFAULT_LISTEN, Settings, StoreServer
from store.config import load_agents, load_device_types
from store.database import Database, redact
from store.summary import Rules


def write_agents_file(path: str | Path, agent_id: str, secret_file: str | Path) -> bytes:
    """Write a fresh random secret to ``secret_file`` (for the agent's upstream
    secret_file) and an agents file naming it; the secret."""
    secret = random_secrets.token_hex(32).encode("ascii")
    secret_file = Path(secret_file)
    secret_file.write_bytes(secret + b"\n")
    secret_file.chmod(0o600)
    Path(path).write_text(
        f'[agents."{agent_id}"]\nsecret_file = "{secret_file.resolve()}"\n', encoding="utf-8"
    )
    return secret


def start_store(
    db_url: str,
    agents_file: str | Path,
    *,
    bundle: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    **settings,
) -> StoreServer:
    """A store serving on a background thread (``.url``, ``.stop()``); the known device
    types from ``bundle`` (a bundle folder, its manifest.json, or a one-per-line text file)
    when given, else any."""
    rules = Rules(load_device_types(bundle) if bundle else None)
    server = StoreServer(
        Settings(db_url=db_url, secrets=load_agents(agents_file), rules=rules, **settings),
        host=host,
        port=port,
    )
    server.start()
    return server


def fill_report(
    db_url: str, agents_file: str | Path | None = None, listen: str = DEFAULT_LISTEN
) -> str:
    """One line: what the store holds and how to open the operators' page."""
    db = Database(db_url)
    conn = db.connect(autocommit=True)
    try:
        homes = queries.homes(db, conn, limit=queries.MAX_LIMIT)
        devices = sum(row["devices"] for row in homes)
        alerts = queries.alerts(db, conn)
        windows = conn.execute("SELECT COUNT(*) FROM trust").fetchone()[0]
    finally:
        conn.close()

    command = f"python -m store serve --db {redact(db_url)} --listen {listen}"
    if agents_file is not None:
        command += f" --agents {agents_file}"
    return (
        f"store: {len(homes)} homes, {devices} device types detected, {windows} trust "
        f"windows, {len(alerts)} alerts; to see them run `{command}` and open "
        f"http://{listen}/"
    )
