"""PostgreSQL in trouble and in company: the server going away mid-ingest, and two store
processes sharing one database."""

import asyncio
import subprocess
import sys
import time
import urllib.request

import aiohttp
import msgpack
import psutil
import pytest
from store_fixtures import (
    ROOT_DIR,
    count_rows,
    device,
    free_port,
    get,
    make_cluster,
    settings,
    trust,
    wait_for,
)

from store.app import StoreServer
from store.auth import signed_headers
from store.database import Database

pytest_plugins = ["store_fixtures"]

AGENTS = {f"bng-{i:02d}": f"secret-for-agent-{i:02d}-abcdefgh".encode() for i in range(8)}


def body(agent: str, seq: int) -> bytes:
    """A trust summary with two device types."""
    return msgpack.packb(
        trust(
            agent=agent,
            seq=seq,
            home=f"{agent}-home-{seq % 5}",
            start=1_760_000_000.0 + seq * 3600,
            devices=[device("Amazon Echo", 0.7), device("TP-Link plug", 0.6)],
        )
    )


async def deliver(session, url: str, agent: str, seq: int, seen: list) -> str:
    """Send one summary like an agent: retry on 5xx or a refused connection until taken."""
    data = body(agent, seq)
    while True:
        headers = signed_headers(agent, AGENTS[agent], data)
        try:
            async with session.post(url + "/api/v1/ingest", data=data, headers=headers) as answer:
                seen.append(answer.status)
                if answer.status == 200:
                    return (await answer.json())["status"]
                assert answer.status >= 500, await answer.text()
        except aiohttp.ClientConnectionError:
            seen.append(0)
        await asyncio.sleep(0.05)


def consistent(db_url: str) -> tuple[int, int, int]:
    """(ingest log rows, trust rows, trust rows without a logged summary)."""
    conn = Database(db_url).connect(autocommit=True)
    try:
        logged = conn.execute("SELECT COUNT(*) FROM ingest_log").fetchone()[0]
        rows = conn.execute("SELECT COUNT(*) FROM trust").fetchone()[0]
        orphans = conn.execute(
            "SELECT COUNT(*) FROM trust t LEFT JOIN ingest_log l "
            "ON l.agent_id = t.agent_id AND l.seq = t.seq WHERE l.seq IS NULL"
        ).fetchone()[0]
        return logged, rows, orphans
    finally:
        conn.close()


@pytest.mark.slow
def test_database_going_away_mid_ingest():
    """With the server stopped mid-run the agents see 5xx, and after it returns every
    summary is stored once and whole."""
    cluster = make_cluster()
    cluster.init()
    cluster.start()
    try:
        db_url = cluster.new_database()
        with StoreServer(settings(db_url, rules=settings(db_url).rules)) as server:
            server.settings.secrets.update(AGENTS)
            seen: list[int] = []

            async def run():
                async with aiohttp.ClientSession() as session:

                    async def agent_run(agent):
                        for seq in range(1, 41):
                            await deliver(session, server.url, agent, seq, seen)
                            await asyncio.sleep(0.01)

                    async def outage():
                        await asyncio.sleep(0.3)
                        await asyncio.to_thread(cluster.stop, "immediate")
                        await asyncio.sleep(1.0)
                        await asyncio.to_thread(cluster.start)

                    await asyncio.gather(outage(), *(agent_run(a) for a in AGENTS))

            assert get(server.url, "/api/v1/homes")[0] == 200
            asyncio.run(run())
            status, homes = get(server.url, "/api/v1/homes")
            assert status == 200 and len(homes) == 5 * len(AGENTS)

        assert any(status >= 500 for status in seen), "the outage was not noticed"
        assert consistent(db_url) == (40 * len(AGENTS), 80 * len(AGENTS), 0)
    finally:
        cluster.remove()


def start_process(db_url: str, agents_file, port: int, *extra: str) -> subprocess.Popen:
    """``python -m store serve`` on a port; returns once it answers."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "store",
            "serve",
            "--db",
            db_url,
            "--agents",
            str(agents_file),
            "--listen",
            f"127.0.0.1:{port}",
            "--log-level",
            "WARNING",
            *extra,
        ],
        cwd=ROOT_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def answers():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/homes", timeout=2):
                return True
        except OSError:
            assert process.poll() is None, process.stderr.read().decode()
            return False

    assert wait_for(answers, timeout=30)
    return process


@pytest.mark.slow
def test_two_processes_one_database(pg_cluster, tmp_path):
    """Two store processes behind one PostgreSQL, each sent every summary, store each
    exactly once."""
    db_url = pg_cluster.new_database()
    agents_file = tmp_path / "agents.toml"
    agents_file.write_text(
        "".join(f'[agents."{a}"]\nsecret = "{s.decode()}"\n' for a, s in AGENTS.items())
    )
    ports = [free_port(), free_port()]
    processes = []
    try:
        processes = [start_process(db_url, agents_file, port) for port in ports]
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        seen: list[int] = []

        async def run():
            async with aiohttp.ClientSession() as session:

                async def agent_run(agent):
                    outcomes = []
                    for seq in range(1, 26):
                        both = await asyncio.gather(
                            *(deliver(session, url, agent, seq, seen) for url in urls)
                        )
                        outcomes.append(sorted(both))
                    return outcomes

                return await asyncio.gather(*(agent_run(a) for a in AGENTS))

        started = time.monotonic()
        results = asyncio.run(run())
        assert time.monotonic() - started < 60

        pairs = [pair for outcomes in results for pair in outcomes]
        assert all(pair == ["duplicate", "stored"] for pair in pairs)
        assert consistent(db_url) == (25 * len(AGENTS), 50 * len(AGENTS), 0)
        assert count_rows(db_url, "agents") == len(AGENTS)
        assert count_rows(db_url, "seq_gaps") == 0
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)


@pytest.mark.slow
def test_serve_processes_share_one_port(pg_cluster, tmp_path):
    """``serve --processes 2`` answers on one port from two processes, storing each
    summary once."""
    db_url = pg_cluster.new_database()
    agents_file = tmp_path / "agents.toml"
    agents_file.write_text(
        "".join(f'[agents."{a}"]\nsecret = "{s.decode()}"\n' for a, s in AGENTS.items())
    )
    port = free_port()
    process = start_process(db_url, agents_file, port, "--processes", "2")
    try:
        url = f"http://127.0.0.1:{port}"
        seen: list[int] = []

        async def run():
            async with aiohttp.ClientSession() as session:
                jobs = [deliver(session, url, a, seq, seen) for a in AGENTS for seq in (1, 2)]
                return await asyncio.gather(*jobs)

        assert asyncio.run(run()) == ["stored"] * (2 * len(AGENTS))
        children = psutil.Process(process.pid).children()
        servers = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
        assert len(servers) == 2
    finally:
        process.terminate()
        process.wait(30)
    assert consistent(db_url) == (2 * len(AGENTS), 4 * len(AGENTS), 0)
