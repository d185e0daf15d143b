"""Ingest over HTTP on SQLite and PostgreSQL: authentication, limits, validation,
idempotency, sequence gaps and transactional writes."""

import asyncio
import time

import aiohttp
import msgpack
import pytest
from store_fixtures import (
    DEVICE_TYPES,
    SECRETS,
    T0,
    count_rows,
    detections,
    device,
    event,
    get,
    post,
    settings,
    trust,
)

from store.app import StoreServer
from store.auth import signed_headers
from store.database import Database
from store.summary import Rules

pytest_plugins = ["store_fixtures"]

TABLES = ("ingest_log", "homes", "inventory", "trust", "agents")


def nothing_stored(url: str) -> bool:
    """No summary left a row anywhere."""
    return all(count_rows(url, table) == 0 for table in TABLES)


def test_stored_once_then_duplicate(store, db_url):
    """A resent summary is acknowledged as duplicate and stored once."""
    assert post(store.url, detections(seq=1)) == (200, {"status": "stored"})
    assert post(store.url, detections(seq=1)) == (200, {"status": "duplicate"})
    assert post(store.url, trust(seq=2)) == (200, {"status": "stored"})
    assert post(store.url, trust(seq=2)) == (200, {"status": "duplicate"})

    assert count_rows(db_url, "ingest_log") == 2
    assert count_rows(db_url, "inventory") == 1
    assert count_rows(db_url, "trust") == 1


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"X-Agent-Id": "bng-99"}, "agent id"),
        ({"X-Agent-Id": None}, "agent id"),
        ({"X-Signature": None}, "signature"),
        ({"X-Signature": "00" * 32}, "signature"),
        ({"X-Signature": "zz\u00e9"}, "signature"),
        ({"X-Timestamp": None}, "timestamp"),
        ({"X-Timestamp": "12.5"}, "timestamp"),
    ],
)
def test_bad_credentials_are_401(store, db_url, change, reason):
    """Missing or wrong credentials get 401 and store nothing."""
    status, answer = post(store.url, detections(), headers=change)
    assert status == 401
    assert reason in answer["error"]
    assert nothing_stored(db_url)


def test_wrong_secret_and_stale_or_future_timestamps_are_401(store, db_url):
    """Another agent's secret, or a timestamp outside the replay window, gets 401."""
    assert post(store.url, detections(), secret=SECRETS["bng-02"])[0] == 401
    assert post(store.url, detections(), now=time.time() - 301)[0] == 401
    assert post(store.url, detections(), now=time.time() + 301)[0] == 401
    assert post(store.url, detections(), now=time.time() - 250)[0] == 200
    assert count_rows(db_url, "ingest_log") == 1
    status = get(store.url, "/api/v1/status")[1]
    assert status["ingest"]["unauthorized"] == 3
    assert status["writer"]["stored"] == 1


def test_replayed_request_is_a_duplicate_and_a_changed_body_is_refused(store, db_url):
    """The very same signed request sent again is a duplicate; a body changed after
    signing is refused."""
    data = msgpack.packb(detections())
    headers = signed_headers("bng-01", SECRETS["bng-01"], data)
    tampered = msgpack.packb(detections(events=[event("home-9", "Amazon Echo")]))

    async def send(body):
        async with (
            aiohttp.ClientSession() as session,
            session.post(store.url + "/api/v1/ingest", data=body, headers=headers) as answer,
        ):
            return answer.status, await answer.json()

    assert asyncio.run(send(tampered))[0] == 401
    assert nothing_stored(db_url)
    assert asyncio.run(send(data)) == (200, {"status": "stored"})
    assert asyncio.run(send(data)) == (200, {"status": "duplicate"})
    assert count_rows(db_url, "ingest_log") == 1
    assert [h["home"] for h in get(store.url, "/api/v1/homes")[1]] == ["home-1"]


def test_body_over_the_limit_is_413(db_url):
    """A body over the size limit gets 413, declared or streamed without a length."""
    with StoreServer(settings(db_url, max_body=2048)) as server:
        big = detections(events=[event(f"home-{i}", "Amazon Echo") for i in range(40)])
        assert post(server.url, big)[0] == 413

        data = msgpack.packb(big)
        headers = signed_headers("bng-01", SECRETS["bng-01"], data)

        async def chunks():
            for start in range(0, len(data), 512):
                yield data[start : start + 512]

        async def send():
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    server.url + "/api/v1/ingest", data=chunks(), headers=headers
                ) as answer,
            ):
                return answer.status

        assert asyncio.run(send()) == 413
        assert post(server.url, detections())[0] == 200
    assert count_rows(db_url, "ingest_log") == 1


BAD_BODIES = [
    (b"\xc1garbage", "body"),
    (msgpack.packb(detections(seq=0)), "seq"),
    (msgpack.packb({**detections(), "seq": "1"}), "seq"),
    (msgpack.packb({k: v for k, v in detections().items() if k != "model"}), "model"),
    (msgpack.packb(detections(events=[event("h", "Toaster 3000")])), "events[0].device_type"),
    (
        msgpack.packb(detections(events=[event("h", "Amazon Echo", hit_flow=-4)])),
        "events[0].hit_flow",
    ),
    (msgpack.packb(detections(sent_at=1e12)), "sent_at"),
    (
        msgpack.packb(trust(devices=[device("Amazon Echo", 0.5, accepted=10**14)])),
        "devices[0].accepted",
    ),
    (msgpack.packb(trust(window={"start": T0, "end": T0 - 5})), "window.end"),
    (msgpack.packb(detections(agent="bng-02")), "agent"),
]


def test_invalid_bodies_are_400_with_the_field(store, db_url):
    """Malformed summaries get 400 naming the field, and nothing of them is stored."""
    for data, field in BAD_BODIES:
        status, answer = post(store.url, data)
        assert (status, answer.get("field")) == (400, field), answer
    assert nothing_stored(db_url)
    assert get(store.url, "/api/v1/status")[1]["ingest"]["invalid"] == len(BAD_BODIES)


def test_sql_looking_text_is_stored_verbatim(db_url):
    """Quotes, semicolons and SQL keywords in every text field are stored as given."""
    nasty = "x'); DROP TABLE homes; --"
    agent = 'bng"; DELETE FROM agents; --'
    secrets = {agent: b"secret-of-the-nasty-agent-000"}
    rules = Rules(DEVICE_TYPES | {nasty + " type"})
    with StoreServer(settings(db_url, rules=rules)) as server:
        server.settings.secrets.update(secrets)
        det = detections(
            agent=agent, model=nasty, counters={nasty: 1}, events=[event(nasty, nasty + " type")]
        )
        assert post(server.url, det, agent=agent, secret=secrets[agent])[0] == 200
        tr = trust(
            agent=agent,
            seq=2,
            home=nasty,
            model=nasty,
            counters={nasty: 1},
            devices=[device(nasty + " type", 0.005)],
        )
        assert post(server.url, tr, agent=agent, secret=secrets[agent])[0] == 200

        _, homes = get(server.url, "/api/v1/homes")
        assert [(h["home"], h["agent"]) for h in homes] == [(nasty, agent)]
        _, agents = get(server.url, "/api/v1/agents")
        assert agents[0]["counters"] == {nasty: 1}
        assert agents[0]["model"] == nasty
        _, alerts = get(server.url, "/api/v1/alerts")
        assert [(a["home"], a["device_type"]) for a in alerts] == [(nasty, nasty + " type")]
    assert count_rows(db_url, "agents") == 1


def test_sequence_gaps_are_recorded_and_filled(store):
    """Skipped sequence numbers are recorded per agent and shrink as late ones arrive."""

    def gaps(agent="bng-01"):
        rows = get(store.url, "/api/v1/agents")[1]
        return next(row["gaps"] for row in rows if row["agent"] == agent)

    assert post(store.url, detections(seq=1))[0] == 200
    assert post(store.url, detections(seq=5))[0] == 200
    assert gaps() == [[2, 4]]
    assert post(store.url, detections(seq=3))[0] == 200
    assert gaps() == [[2, 2], [4, 4]]
    assert post(store.url, detections(seq=2))[0] == 200
    assert post(store.url, detections(seq=4))[0] == 200
    assert gaps() == []

    assert post(store.url, detections(agent="bng-02", seq=3), agent="bng-02")[0] == 200
    assert gaps("bng-02") == [[1, 2]]
    assert gaps() == []


async def _post_many(url: str, bodies: list[tuple[str, bytes]]) -> list[tuple[int, dict]]:
    """POST all bodies at once; (status, answer) each."""
    async with aiohttp.ClientSession() as session:

        async def one(agent, data):
            headers = signed_headers(agent, SECRETS[agent], data)
            async with session.post(url + "/api/v1/ingest", data=data, headers=headers) as answer:
                return answer.status, await answer.json()

        return await asyncio.gather(*(one(agent, data) for agent, data in bodies))


def test_concurrent_duplicates_are_stored_once(store, db_url):
    """Many simultaneous posts of the same summary store it exactly once."""
    data = msgpack.packb(trust(seq=1, devices=[device(t, 0.8) for t in sorted(DEVICE_TYPES)]))
    answers = asyncio.run(_post_many(store.url, [("bng-01", data)] * 40))

    statuses = sorted(answer["status"] for _, answer in answers)
    assert statuses == ["duplicate"] * 39 + ["stored"]
    assert count_rows(db_url, "ingest_log") == 1
    assert count_rows(db_url, "trust") == len(DEVICE_TYPES)


def test_concurrent_distinct_summaries_all_stored(store, db_url):
    """Summaries from two agents posted together are all stored, none lost."""
    bodies = [
        (agent, msgpack.packb(trust(agent=agent, seq=seq, home=f"{agent}-h{seq}")))
        for agent in SECRETS
        for seq in range(1, 31)
    ]
    answers = asyncio.run(_post_many(store.url, bodies))
    assert all(answer == {"status": "stored"} for _, answer in answers)
    assert count_rows(db_url, "ingest_log") == len(bodies)
    assert count_rows(db_url, "homes") == len(bodies)


FAIL_ON_CAMERA = {
    "sqlite": [
        (
            "CREATE TRIGGER fail_camera BEFORE INSERT ON trust "
            "WHEN NEW.device_type = 'Netatmo camera' "
            "BEGIN SELECT RAISE(ABORT, 'camera refused'); END"
        )
    ],
    "postgresql": [
        (
            "CREATE FUNCTION fail_camera() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN IF NEW.device_type = 'Netatmo camera' THEN "
            "RAISE EXCEPTION 'camera refused'; END IF; RETURN NEW; END $$"
        ),
        (
            "CREATE TRIGGER fail_camera BEFORE INSERT ON trust "
            "FOR EACH ROW EXECUTE FUNCTION fail_camera()"
        ),
    ],
}


def test_failed_write_stores_nothing_of_that_summary(store, db_url):
    """A summary whose write fails midway is answered 503 and leaves no row behind,
    while the summaries batched with it are stored."""
    db = Database(db_url)
    conn = db.connect(autocommit=True)
    for statement in FAIL_ON_CAMERA[db.dialect]:
        conn.execute(statement)
    conn.close()

    bad = trust(
        seq=7, home="home-bad", devices=[device("Amazon Echo", 0.9), device("Netatmo camera", 0.9)]
    )
    bodies = [("bng-01", msgpack.packb(bad))]
    bodies += [("bng-01", msgpack.packb(trust(seq=s, home=f"home-{s}"))) for s in range(1, 7)]
    answers = asyncio.run(_post_many(store.url, bodies))

    assert answers[0][0] == 503
    assert all(answer == (200, {"status": "stored"}) for answer in answers[1:])
    homes = [row["home"] for row in get(store.url, "/api/v1/homes")[1]]
    assert "home-bad" not in homes and len(homes) == 6
    assert count_rows(db_url, "ingest_log") == 6
    assert count_rows(db_url, "trust") == 6
