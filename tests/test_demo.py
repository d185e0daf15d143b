"""The demo's live part at a small size: testbed homes -> agent daemon over UDP -> store,
and the store's page in headless Chromium showing what the agent found."""

import json
import sqlite3

import pytest
from conftest import require_tool
from test_store_page import browser  # noqa: F401 - the headless Chromium fixture

from compile import demo


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A tiny testbed with three homes, a tiny bundle, and the demo's live run."""
    out = tmp_path_factory.mktemp("demo")
    testbed, bundle = out / "testbed", out / "bundle"
    demo._run_module(
        ["compile", "testbed", "--out", str(testbed), "--scale", "0.005", "--homes", "3",
         "--seed", "2"],
        out / "testbed.log",
    )  # fmt: skip
    demo._run_module(
        ["compile", "train", "--data", str(testbed), "--out", str(bundle), "--grid", "10x5",
         "--folds", "2", "--max-leaves", "32", "--no-unbounded"],
        out / "train.log",
    )  # fmt: skip
    scores = demo.run_live(out, testbed, bundle, rate=20_000)
    homes = json.loads((testbed / "isp" / "homes.json").read_text())
    return out, bundle, homes, scores


def _stored_inventory(out) -> dict[str, set]:
    with sqlite3.connect(out / "store.db") as db:
        rows = db.execute("SELECT home, device_type FROM inventory").fetchall()
    found: dict[str, set] = {}
    for home, device_type in rows:
        found.setdefault(home, set()).add(device_type)
    return found


def test_agent_takes_every_record_and_fills_the_store(live):
    """Every record sent over UDP is received and scored, and the inventories stored are
    those the demo scores against the testbed's ground truth."""
    out, _, homes, scores = live
    assert scores["sent"] > 0
    assert scores["received"] == scores["sent"] == scores["scored"]

    stored = _stored_inventory(out)
    truth = {h["subscriber_id"]: set(h["iot_device_types"]) for h in homes}
    assert stored and set(stored) <= set(truth)
    hits = sum(len(stored.get(h, set()) & t) for h, t in truth.items())
    assert scores["recall"] == pytest.approx(hits / sum(len(t) for t in truth.values()))
    assert scores["precision"] == pytest.approx(hits / sum(len(s) for s in stored.values()))


def test_page_shows_what_the_agent_found(live, browser):  # noqa: F811
    """The page, served from the store the agent filled, lists its homes and device types
    with a trust plot for each."""
    require_tool("chromium")
    from selenium.webdriver.common.by import By

    from store.demo import start_store

    out, bundle, _, _ = live
    server = start_store(f"sqlite:///{out / 'store.db'}", out / "agents.toml", bundle=bundle)
    try:
        browser.get(server.url + "/")
        sections = browser.find_elements(By.CSS_SELECTOR, "section.home")
        shown = {
            s.get_attribute("data-home"): {
                row.get_attribute("data-device-type")
                for row in s.find_elements(By.CSS_SELECTOR, "tr.device")
            }
            for s in sections
        }
        plots = browser.find_elements(By.CSS_SELECTOR, "tr.device svg.trust-plot")
        points = [len(p.find_elements(By.TAG_NAME, "circle")) for p in plots]
    finally:
        server.stop()

    assert shown == _stored_inventory(out)
    assert len(plots) == sum(len(types) for types in shown.values())
    assert sum(points) > 0
