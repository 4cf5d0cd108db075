"""The care team's dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright):
log-in, open flags first, a person's trend against the baseline band, acknowledging a flag (and the
audit log), a silent gateway shown as an alert, a kiosk site's sessions. The data are made by the
gateways' own code (edge nightly's builders) and a kiosk session's real payload builder.
Screenshots go to the test's tmp folder, and to $FLEET_SCREENSHOTS when set (docs/fleet/ holds a set).

Skips, saying why, where Playwright or the browser cannot be had.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("jinja2")

from fleet_support import simulate_fleet  # noqa: E402


def _hours_ago(hours: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - hours * 3600))


@pytest.fixture
def dashboard(tmp_path):
    from edge import session_payload
    from edge.apps.fleet.ingest import Checker
    from edge.apps.fleet.store import FleetStore, database_url
    from edge.apps.fleet.users import Users
    from edge.apps.fleet.views import Views
    from edge.apps.fleet.web import Dashboard, DashboardServer

    fleet = simulate_fleet(tmp_path / "gateways", 4, 4, 24)
    checker = Checker("edge", 65536)
    store = FleetStore(database_url(str(tmp_path / "fleet.sqlite")))
    messages = []
    for gateway, nights in fleet.items():
        for _night, batch in nights[:-4] if gateway == "gw003" else nights:  # gw003 went quiet 4 days ago
            for _mid, topic, payload, _retain in batch:
                if gateway == "gw003":  # its clock says when it last spoke
                    data = json.loads(payload)
                    for key in ("generated_utc", "finished_utc"):
                        if key in data:
                            data[key] = _hours_ago(4 * 24 + 2)
                    payload = json.dumps(data).encode()
                messages.append(checker.check(topic, payload))
    summary = {"session_id": "20261204T101500Z-3f2a", "started_utc": "2026-12-04T10:15:00Z", "duration_s": 40.0,
               "complete": True, "stop_reason": "complete", "demo_weights": True,
               "screening": {"face_share": 0.93, "voiced_share": 0.41,
                             "emotion_vote": {"status": "ok", "level": "Low"},
                             "phq8": {"status": "ok", "mu": 6.2, "interval": [3.1, 9.3], "band": "mild (5-9)"}}}
    session = session_payload(summary, "clinic-a")
    messages.append(checker.check("edge/clinic-a/session", json.dumps(session).encode()))
    assert all(not isinstance(m, str) for m in messages), [m for m in messages if isinstance(m, str)]
    store.store_batch(messages)
    Users(store).add("nurse1", "correct horse battery")
    server = DashboardServer("127.0.0.1", 0, Dashboard(Views(store, 36, 50), Users(store), 1.0)).start()
    yield server, store
    server.close()
    store.close()


def _shot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    target = os.environ.get("FLEET_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


def test_the_dashboard_in_chromium(browser, dashboard, tmp_path):
    server, store = dashboard
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server.url)
    assert page.url.endswith("/login")
    _shot(page, tmp_path, "login")
    page.fill("input[name=user]", "nurse1")
    page.fill("input[name=password]", "not the password")
    page.click("#login")
    assert "Wrong user name or password" in page.inner_text("#login-error")
    page.fill("input[name=user]", "nurse1")
    page.fill("input[name=password]", "correct horse battery")
    page.click("#login")
    page.wait_for_selector("#people")
    # The silent gateway is an alert at the top; people with open flags come first.
    alert = page.inner_text(".silent-gateway")
    assert "gw003" in alert and "silent" in alert
    classes = page.eval_on_selector_all("#people tbody tr", "rows => rows.map(r => r.className)")
    assert classes[0] == "flagged" and "" in classes
    assert "flagged" not in classes[classes.index(""):], "open flags first"
    first = page.inner_text("#people tbody tr:first-child td:nth-child(3)")
    assert "PHQ-8" in first or "baseline" in first.lower()
    _shot(page, tmp_path, "people")
    # A person's trend against the band, then the flag acknowledged with a note.
    page.click("#people tbody tr:first-child td:first-child a")
    page.wait_for_selector("#flags")
    assert page.locator(".chart svg").count() == 8
    assert page.locator(".chart rect.band").count() >= 1 and page.locator(".chart circle.out").count() >= 1
    page.click("text=30 days")
    page.wait_for_selector(".chart svg")
    assert "last 30 days" in page.inner_text("h2:nth-of-type(2)")
    page.click("text=90 days")
    page.wait_for_selector(".chart svg")
    _shot(page, tmp_path, "person")
    page.fill("form.ack textarea", "Called; feeling low this week, GP visit booked Friday.")
    page.click("form.ack button")
    page.wait_for_selector("text=Acknowledged by nurse1")
    page.goto(server.url + "audit")
    assert "GP visit booked Friday" in page.inner_text("#audit")
    _shot(page, tmp_path, "audit")
    page.goto(server.url + "gateways")
    assert "silent" in page.inner_text("#gw003")
    _shot(page, tmp_path, "gateways")
    page.goto(server.url + "kiosks/clinic-a")
    assert "mild (5-9)" in page.inner_text("#sessions") and "demo weights" in page.inner_text("#sessions")
    _shot(page, tmp_path, "kiosk_sessions")
    page.close()
