"""The operators' page in headless Chromium: it loads, lists the right homes and device
types, plots trust over time and lists the alerts."""

import shutil
import tempfile

import pytest
from conftest import require_tool
from store_fixtures import (
    T0,
    detections,
    device,
    event,
    post,
    trust,
)

pytest_plugins = ["store_fixtures"]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOWS = 6


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium with a fresh profile, no network extras."""
    require_tool("chromium")
    require_tool("chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="store-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    service = Service(executable_path=shutil.which("chromedriver") or CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def fill(url: str) -> dict[str, list[str]]:
    """Homes with device types and trust windows, sent through the real ingest endpoint;
    the expected device types per home."""
    expected = {
        "home-a": ["Amazon Echo", "Netatmo camera"],
        "home-b": ["TP-Link plug"],
        "home <c> & 'd'": ["Belkin Wemo switch"],
    }
    events = [
        event(home, dt, T0 + i) for home, types in expected.items() for i, dt in enumerate(types)
    ]
    assert post(url, detections(seq=1, events=events))[0] == 200

    seq = 2
    for home, types in expected.items():
        for w in range(WINDOWS):
            low = home == "home-b" and w >= WINDOWS - 2
            devices = [device(dt, 0.005 if low else 0.9 - 0.05 * w) for dt in types]
            body = trust(seq=seq, home=home, start=T0 + w * 3600, devices=devices)
            assert post(url, body)[0] == 200
            seq += 1
    return expected


def test_page_shows_homes_devices_plots_and_alerts(store, browser):
    """The page lists every home with its device types, a plot with one point per window,
    and the one device type whose trust fell as an alert."""
    from selenium.webdriver.common.by import By

    expected = fill(store.url)
    browser.get(store.url + "/")
    assert "iotwatch" in browser.title

    sections = browser.find_elements(By.CSS_SELECTOR, "section.home")
    shown = {
        s.get_attribute("data-home"): sorted(
            row.get_attribute("data-device-type")
            for row in s.find_elements(By.CSS_SELECTOR, "tr.device")
        )
        for s in sections
    }
    assert shown == {home: sorted(types) for home, types in expected.items()}

    plots = browser.find_elements(By.CSS_SELECTOR, "tr.device svg.trust-plot")
    assert len(plots) == sum(len(types) for types in expected.values())
    for plot in plots:
        assert len(plot.find_elements(By.TAG_NAME, "circle")) == WINDOWS
        assert plot.size["width"] > 100 and plot.size["height"] > 20

    alerts = browser.find_elements(By.CSS_SELECTOR, "#alerts tr.alert")
    assert [a.find_elements(By.TAG_NAME, "td")[0].text for a in alerts] == ["home-b"]


def test_page_of_an_empty_store(store, browser):
    """An empty store's page loads and says there are no alerts."""
    from selenium.webdriver.common.by import By

    browser.get(store.url + "/")
    assert browser.find_element(By.ID, "no-alerts").is_displayed()
    assert browser.find_elements(By.CSS_SELECTOR, "section.home") == []
