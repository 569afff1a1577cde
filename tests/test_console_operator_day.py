"""The operator's day in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright):

- at 390x844 (a phone) no page of the console, for any role, scrolls sideways; the alert queue
  is cards; the adjudication buttons are on screen; every page has a title and the favicon; the
  403 page speaks plainly;
- a camera that stops and comes back (a real MJPEG stream behind a real live run posting with its
  worker token) is seen on the dashboard as it happens, with the "down too long" warning and its
  audit entries;
- the alert queue filters and pages;
- the public pages need no login and hold no name (checked against every name in the database).

Skipped when /usr/bin/chromium or the playwright package is absent (.ci/run installs both).
"""

from __future__ import annotations

import csv
import io
import json
import re
import threading
from datetime import timedelta

import pytest

import chromium  # noqa: E402
from chromium import browser, sync_api  # noqa: E402,F401,F811  (skips this module without Chromium or playwright)

from sqlalchemy import select  # noqa: E402

from openlfr.governance import cameras as health  # noqa: E402
from openlfr.governance import publication  # noqa: E402
from openlfr.governance.roles import ROLES  # noqa: E402
from openlfr.governance.testing import PASSWORD, make_world  # noqa: E402
from openlfr.server import create_app  # noqa: E402
from openlfr.store.models import SnapshotTemplate, SubjectRow, User  # noqa: E402
from openlfr.web.security import Tokens  # noqa: E402
from openlfr.web.testing import fake_enroller, live_server  # noqa: E402
from dbtesting import backend_url, fast_passwords  # noqa: E402,F401
from openlfr.transparency.public import public_records  # noqa: E402

T = 15_000
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def site(tmp_path, fast_passwords):  # noqa: F811
    with backend_url("sqlite", tmp_path) as url:
        w = make_world(url, subjects=3)
        w.gov.create_user(w["administrator"], "jane.citizen-officer", ["operator"], PASSWORD)  # a name to look for
        ended = w.active_deployment(name="Market Square", location="Market Square, Swansea", zone="east gate")
        for i in range(3):
            w.alert(ended, w.subjects[i % 3], track=i + 1)
        w.gov.count_faces_seen(w["operator"], ended, "cam-a", 25)
        w.gov.adjudicate(w["operator"], 1, "true_alert")
        w.gov.adjudicate(w["operator"], 2, "false_alert")
        w.gov.record_outcome(w["engagement_officer"], 1, "confirmed", "arrest")
        w.gov.stop_deployment(w["operator"], ended, "done")
        d = w.active_deployment(start_in=timedelta(minutes=5))
        for i in range(60):  # more than a page of alerts
            w.alert(d, w.subjects[i % 3], track=100 + i, camera="cam-a" if i % 2 else "cam-b")
        app = create_app(url, w.clock, enroller=fake_enroller, stream_poll_s=0.2)
        with live_server(app) as base:
            yield w, ended, d, base


def login(browser, base: str, user: str, viewport=PHONE):
    return chromium.login(browser, base, user, PASSWORD, viewport, T)


def overflow(page) -> int:
    """How far the page reaches beyond the viewport sideways (0: no sideways scrolling)."""
    return page.evaluate("() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth) - window.innerWidth")


def test_no_page_scrolls_sideways_on_a_phone(browser, site):
    w, ended, d, base = site
    pages = ["/console/alerts", "/console/alerts?page=2", "/console/alerts?camera=cam-a&status=pending", "/console/alerts/1",
             "/console/alerts/5", "/console/deployments", f"/console/deployments/{d}", f"/console/deployments/{ended}",
             f"/console/deployments/{ended}/report", "/console/watchlists", "/console/watchlists/wanted", "/console/audit",
             "/console/users", "/console/tokens", "/docs", "/console/no-such-page"]
    seen = set()
    for role in ROLES:
        ctx, page = login(browser, base, role)
        for url in pages:
            resp = page.goto(base + url)
            page.wait_for_load_state("load")
            assert overflow(page) <= 0, (role, url, overflow(page))
            title = page.title()
            assert title and not title.startswith("—") and "openlfr" in title, (role, url, title)
            assert page.locator('link[rel="icon"]').count() == 1
            if resp.status == 403:
                assert title.startswith("Not allowed")
                detail = page.locator("#error-detail").inner_text()
                assert not re.search(r"\b[a-z]+\.[a-z]+\b", detail), detail
                assert "role" in detail
            seen.add((url, resp.status))
        ctx.close()
    assert (f"/console/deployments/{ended}/report", 200) in seen and ("/console/audit", 403) in seen
    assert ("/console/no-such-page", 404) in seen
    ctx = browser.new_context(viewport=PHONE)
    page = ctx.new_page()
    for url in ("/login", "/public"):
        page.goto(base + url)
        assert overflow(page) <= 0, url
    ctx.close()


def test_queue_is_cards_and_review_buttons_are_reachable(browser, site):
    w, ended, d, base = site
    ctx, page = login(browser, base, "operator")
    assert page.url.endswith("/console/alerts")
    cards = page.locator("#alert-queue tbody tr")
    assert cards.count() == 50  # a page of 50, newest first
    assert page.locator("#pager").is_visible() and "page 1 of 2" in page.locator("#queue-count").inner_text()
    box = cards.first.bounding_box()
    assert box["width"] <= 390 and box["height"] > 60  # a card, not a 681 px table row
    review = cards.first.get_by_role("link", name=re.compile("Review"))
    rb = review.bounding_box()
    assert 0 <= rb["x"] and rb["x"] + rb["width"] <= 390
    # the filters
    page.select_option("#alert-filters select[name=camera]", "cam-b")
    page.select_option("#alert-filters select[name=status]", "pending")
    page.click("#alert-filters button[type=submit]")
    page.wait_for_url(re.compile(r".*camera=cam-b.*"))
    texts = page.locator("#alert-queue tbody tr").all_inner_texts()
    assert len(texts) == 30 and all("cam-b" in t and "Awaiting review" in t for t in texts)
    page.fill("#alert-filters input[name=subject]", "Person S2")
    page.click("#alert-filters button[type=submit]")
    texts = page.locator("#alert-queue tbody tr").all_inner_texts()
    assert texts and all("Person S2" in t for t in texts) and len(texts) == 10
    # the review buttons: on screen without scrolling sideways, big enough for a thumb
    page.goto(f"{base}/console/alerts/5")
    for b in page.locator("#adjudicate-form .buttons button").all():
        bb = b.bounding_box()
        assert bb["x"] >= 0 and bb["x"] + bb["width"] <= 390 and bb["height"] >= 44
    page.locator("#adjudicate-form .buttons button").first.scroll_into_view_if_needed()
    assert page.locator("#adjudicate-form .buttons button").first.is_visible()
    ctx.close()


def test_camera_that_stops_and_comes_back_is_seen_live(browser, site, tmp_path):
    from test_live_sources import MjpegServer

    from openlfr.worker.client import open_remote_run
    from openlfr.live.config import RunConfig
    from openlfr.live.runner import LiveRunner

    w, ended, d, base = site
    health.set_warning_after_s(w.gov, w["administrator"], 5)
    ctx, board = login(browser, base, "operator", viewport={"width": 1280, "height": 900})
    board.goto(f"{base}/console/deployments/{d}")
    board.wait_for_function("window.openlfr && window.openlfr.ready")
    state = board.locator('#camera-table tr[data-camera="cam-a"] .cam-state')
    assert state.inner_text() == "waiting"

    srv = MjpegServer(frames_per_connection=100000, fps=25).start()
    token = Tokens(w.gov).create(w["operator"], "worker", "camera host", deployment_id=d)[0]
    run = open_remote_run(base, token, d, buffer_dir=tmp_path / "buffer")
    cfg = RunConfig(sources=[f"cam-a={srv.url}"], watchlist=None, reconnect_max_s=0.5, stall_timeout_s=2.0,
                    health_every_s=0.5)
    runner = LiveRunner(cfg, watchlist=run.watchlist(), threshold=run.threshold, sink=run.sink)
    runner.prepare()
    t = threading.Thread(target=runner.run, daemon=True)
    t.start()
    try:
        state.filter(has_text="up").wait_for()
        row = board.locator('#camera-table tr[data-camera="cam-a"]')
        board.wait_for_function("() => Number(document.querySelector('#camera-table tr[data-camera=\"cam-a\"] .cam-fps').textContent) > 0")
        assert "worker token" in row.locator(".cam-worker").inner_text()
        assert row.locator(".cam-last").inner_text() != "—"
        api = board.request.get(f"{base}/api/deployments/{d}/cameras").json()
        assert api[0]["camera"] == "cam-a" and api[0]["state"] == "up" and api[0]["frames"] > 0

        srv.stop()  # the camera dies
        state.filter(has_text=re.compile("down|reconnecting")).wait_for()
        assert not board.locator("#camera-warning").is_visible()
        w.clock.advance(seconds=30)  # it stays down past the warning delay (5 s here)
        board.locator("#camera-warning").filter(has_text="cam-a").wait_for()
        assert "warning" in row.get_attribute("class")

        srv.start()  # it comes back
        state.filter(has_text="up").wait_for()
        board.wait_for_function("() => document.getElementById('camera-warning').hidden")
        actions = [e["action"] for e in w.gov.deployment_history(w["auditor"], d)["events"]]
        assert actions.count("camera.down") == 1 and actions.count("camera.restored") == 1
    finally:
        runner.stop()
        t.join(30)
        srv.stop()
        run.sink.close()
        ctx.close()
    last = health.cameras(w.gov, w["auditor"], d)[0]
    assert last["state"] == "down" and last["message"] == "the run was stopped"  # nobody watches it now


def _names(w) -> set[str]:
    with w.gov.db.transaction() as s:
        names = set(s.execute(select(User.name)).scalars())
        names |= set(s.execute(select(SubjectRow.name)).scalars()) | set(s.execute(select(SubjectRow.ref)).scalars())
        names |= set(s.execute(select(SnapshotTemplate.subject_name)).scalars())
    return {n for n in names if n}


def test_public_records_need_no_login_and_hold_no_name(browser, site):
    import httpx

    w, ended, d, base = site
    assert public_records(w.gov) == []
    with pytest.raises(Exception, match="may not"):
        publication.publish(w.gov, w["operator"], ended, "Superintendent")
    with pytest.raises(Exception, match="only an ended"):
        publication.publish(w.gov, w["administrator"], d, "Superintendent")
    with pytest.raises(Exception, match="rank"):
        publication.publish(w.gov, w["administrator"], ended, "jane.citizen-officer")
    # the administrator publishes from the console
    ctx, page = login(browser, base, "administrator", viewport={"width": 1280, "height": 900})
    page.goto(f"{base}/console/deployments/{ended}")
    page.fill("#pub-rank", "Superintendent")
    page.click("#publish-form button[type=submit]")
    page.locator(".flash.ok").filter(has_text="published").wait_for()
    ctx.close()
    audit = [e for e in w.gov.deployment_history(w["auditor"], ended)["events"] if e["action"] == "deployment.publish"]
    assert len(audit) == 1 and audit[0]["actor"] == "administrator"

    with httpx.Client(base_url=base) as anonymous:  # no cookie, no token
        html = anonymous.get("/public")
        js = anonymous.get("/public/deployments.json")
        cs = anonymous.get("/public/deployments.csv")
    assert html.status_code == js.status_code == cs.status_code == 200
    recs = js.json()["deployments"]
    assert [r["deployment"] for r in recs] == [ended]  # the active one is not published
    r = recs[0]
    assert r["location"] == "Market Square, Swansea" and r["authorising_rank"] == "Superintendent"
    assert r["watchlist_size"] == 3 and r["faces_seen"] == 25 and r["alerts"] == 3
    assert (r["true_alerts"], r["false_alerts"], r["unadjudicated"], r["outcome_arrest"], r["engagements_confirmed"]) == (1, 1, 1, 1, 1)
    assert r["false_alert_rate"] is None and "too few faces" in r["false_alert_rate_note"]  # 1 of 25 faces: no rate
    assert r["alert_precision"] == 0.5 and r["alert_precision_ci95_low"] < 0.5 < r["alert_precision_ci95_high"]
    rows = list(csv.DictReader(io.StringIO(cs.text)))
    assert len(rows) == 1 and rows[0]["faces_seen"] == "25"
    ctx = browser.new_context(viewport=PHONE)
    page = ctx.new_page()
    page.goto(f"{base}/public")
    assert "Market Square, Swansea" in page.locator(f"#deployment-{ended}").inner_text()
    ctx.close()
    # no name of anyone in the database, no image, no template
    for body in (html.text, json.dumps(js.json()), cs.text):
        for name in _names(w):
            assert not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", body, re.I), name
        assert "data:image" not in body and "/9j/" not in body and "probe" not in body.lower()
    # withdrawn: gone from the public pages, and audited
    publication.unpublish(w.gov, w["administrator"], ended)
    assert public_records(w.gov) == []


def test_banner_follows_the_alert_it_announces(browser, site):
    w, ended, d, base = site
    ctx, queue = login(browser, base, "operator")
    queue.goto(f"{base}/console/alerts?camera=cam-b")
    queue.wait_for_function("window.openlfr && window.openlfr.ready")
    queue.locator("#live-state").filter(has_text="live").wait_for()
    alert_id = w.alert(d, w.subjects[1], track=999, camera="cam-a")  # another camera: announced, not listed here
    # (recorded straight in the database, as a local run does: the stream polls the log)

    banner = queue.locator("#new-alert-banner")
    banner.filter(has_text=f"New alert {alert_id}").wait_for()
    assert banner.get_attribute("data-alert-id") == str(alert_id)
    assert banner.get_by_role("link", name="Review now").get_attribute("href") == f"/console/alerts/{alert_id}"
    assert queue.locator(f'#alert-queue tr[data-alert-id="{alert_id}"]').count() == 0  # filtered out of this list
    w.gov.adjudicate(w["operator"], alert_id, "false_alert")  # decided elsewhere (another operator)
    banner.filter(has_text="False alert").wait_for()
    assert "done" in banner.get_attribute("class")
    ctx.close()
