"""The console in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright):
each role logs in and sees only what it may; an operator sees an alert posted by a camera
worker appear live (visible and audible cue), adjudicates it with the keyboard, and the
deployment dashboard's figures change; a watchlist manager enrols through the form and gets the
quality report; an auditor verifies the audit chain.

Skipped when /usr/bin/chromium or the playwright package is absent (.ci/run installs both).
"""

from __future__ import annotations

import re

import pytest

import chromium  # noqa: E402
from chromium import browser, sync_api  # noqa: E402,F401,F811  (skips this module without Chromium or playwright)

from openlfr.governance.roles import ROLES  # noqa: E402
from openlfr.live.sink import AlertRecord  # noqa: E402
from openlfr.governance.testing import PASSWORD, make_world, template  # noqa: E402
from openlfr.server import create_app  # noqa: E402
from openlfr.web.security import Tokens  # noqa: E402
from openlfr.web.testing import fake_enroller, jpeg, live_server  # noqa: E402
from openlfr.worker.client import open_remote_run  # noqa: E402
from dbtesting import backend_url, fast_passwords  # noqa: E402,F401

NAV = {"Alerts": "alert.read", "Deployments": "deployment.read", "Watchlists": "watchlist.read", "Audit": "audit.read",
       "Users": "user.list", "Tokens": None, "API": None}
T = 10_000  # ms: the longest any expectation waits


@pytest.fixture
def site(tmp_path, fast_passwords):  # noqa: F811
    with backend_url("sqlite", tmp_path) as url:
        w = make_world(url)
        d = w.active_deployment()
        app = create_app(url, w.clock, enroller=fake_enroller, stream_poll_s=0.2)
        with live_server(app) as base:
            yield w, d, base


def login(browser, base: str, user: str):
    return chromium.login(browser, base, user, PASSWORD, {"width": 1280, "height": 800}, T)


def test_each_role_sees_only_what_it_may(browser, site):
    w, d, base = site
    for role in ROLES:
        ctx, page = login(browser, base, role)
        actor = w[role]
        nav = page.locator("header nav a").all_inner_texts()
        assert nav == [label for label, perm in NAV.items() if perm is None or actor.can(perm)], (role, nav)
        assert role.replace("_", " ") in page.locator(".me").inner_text().lower()
        for label, perm in NAV.items():
            if perm is None or actor.can(perm):
                continue
            url = {"Alerts": "/console/alerts", "Watchlists": "/console/watchlists", "Audit": "/console/audit",
                   "Users": "/console/users"}[label]
            resp = page.goto(base + url)
            assert resp.status == 403 and "Not allowed" in page.locator("h1").inner_text(), (role, url)
        # forms for other roles' jobs are not shown
        page.goto(f"{base}/console/deployments/{d}")
        assert (page.locator("#stop-form").count() > 0) == actor.can("deployment.stop")
        assert (page.locator("#worker-token-form").count() > 0) == actor.can("deployment.run")
        ctx.close()
    # logged out: every page sends you to the login page
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(f"{base}/console/alerts")
    assert "/login" in page.url and page.locator("#username").is_visible()
    ctx.close()


def test_live_alert_adjudication_and_dashboard(browser, site):
    w, d, base = site
    ctx, queue = login(browser, base, "operator")
    assert queue.url.endswith("/console/alerts")
    queue.wait_for_function("window.openlfr && window.openlfr.ready")
    queue.click("#sound-toggle")
    assert queue.locator("#sound-toggle").get_attribute("aria-pressed") == "true"
    queue.locator("#live-state").filter(has_text="live").wait_for()
    board = ctx.new_page()
    board.set_default_timeout(T)
    board.goto(f"{base}/console/deployments/{d}")
    assert board.locator("#fig-alerts").inner_text() == "0" and board.locator("#fig-precision").inner_text() == "—"
    board.wait_for_function("window.openlfr && window.openlfr.ready")

    # a camera worker, in its own process or machine in real life, posts an alert with its token
    token = Tokens(w.gov).create(w["operator"], "worker", "camera host", deployment_id=d)[0]
    run = open_remote_run(base, token, d)
    subject = run.subjects[0]
    run.sink.count_faces_seen("cam-a", 40)
    alert_id = run.sink.record(AlertRecord(camera="cam-a", track=3, subject_id=subject.id, distance=0.38,
                                           frame=120, media_time=4.8, crop=jpeg(9), template=template(77)))
    assert isinstance(alert_id, int)

    row = queue.locator(f'#alert-queue tr[data-alert-id="{alert_id}"]')
    row.wait_for()
    assert "new" in row.get_attribute("class") and subject.name in row.inner_text()
    banner = queue.locator("#new-alert-banner")
    assert banner.is_visible() and "New alert" in banner.inner_text() and "cam-a" in banner.inner_text()
    assert queue.evaluate("window.openlfr.beeps") == 1  # the audible cue fired once
    assert queue.title().startswith("(1)")
    # the dashboard saw it too, without a reload
    board.locator("#fig-alerts").filter(has_text="1").wait_for()
    board.locator("#fig-faces").filter(has_text="40").wait_for()

    # review: probe beside reference, distance, camera, time, quality; adjudicate with the keyboard
    row.get_by_role("link", name=re.compile("Review")).click()
    queue.wait_for_url(f"**/console/alerts/{alert_id}")
    assert queue.locator(".compare img").count() == 2
    for img in queue.locator(".compare img").all():
        assert img.evaluate("i => i.complete && i.naturalWidth > 0")  # decoded: a broken image has width 0
    facts = queue.locator("dl.facts").inner_text()
    assert "0.380" in facts and "cam-a" in facts and "sharpness" in facts
    queue.keyboard.press("t")
    queue.wait_for_url(f"**/console/alerts/{alert_id}")
    queue.locator("#alert-status").filter(has_text="True alert").wait_for()
    assert "recorded" in queue.locator(".flash").inner_text()

    # the dashboard's figures follow: adjudicated 1, precision 100%, false alert rate 0 of 40 faces
    board.locator("#fig-adjudicated").filter(has_text="1").wait_for()
    board.locator("#fig-precision").filter(has_text="100.0%").wait_for()
    assert board.locator("#fig-far").inner_text() == "too few faces"  # 0 of 40 faces is no rate
    assert w.gov.get_deployment(w["auditor"], d)["alerts"]["true_alerts"] == 1

    # the engagement officer records the outcome on the same alert
    ctx2, eo = login(browser, base, "engagement_officer")
    eo.goto(f"{base}/console/alerts/{alert_id}")
    assert eo.locator("#adjudicate-form").count() == 0
    eo.check("input[name=result][value=confirmed]")
    eo.select_option("#outcome", "arrest")
    eo.click("#outcome-form button[type=submit]")
    eo.locator(".history").filter(has_text="Arrest").wait_for()
    ctx2.close()
    # the report page
    board.goto(f"{base}/console/deployments/{d}/report")
    assert "Arrest 1" in board.locator("#outcomes").inner_text()
    assert "too few faces seen" in board.locator("#report-far").inner_text()
    assert "95% CI" in board.locator("#report-precision").inner_text()
    run.sink.close()
    ctx.close()


def test_enrol_and_audit_in_the_browser(browser, site, tmp_path):
    w, d, base = site
    good, bad = tmp_path / "face.jpg", tmp_path / "notes.txt"
    good.write_bytes(jpeg(42))
    bad.write_bytes(b"not an image")
    ctx, page = login(browser, base, "watchlist_manager")
    assert page.url.endswith("/console/watchlists")
    page.click("text=wanted")
    form = page.locator("#enrol-form")
    form.locator("input[name=ref]").fill("W-77")
    form.locator("input[name=name]").fill("Walter Example")
    form.locator("select[name=category]").select_option("risk_of_harm")
    form.locator("input[name=reason]").fill("court order 123")
    form.locator("input[name=images]").set_input_files([str(good), str(bad)])
    form.locator("button[type=submit]").click()
    report = page.locator("#quality-report")
    report.wait_for()
    assert "accepted face.jpg" in report.inner_text() and "rejected notes.txt" in report.inner_text()
    row = page.locator("#subjects tr", has_text="W-77")
    assert row.count() == 1 and row.locator("img.thumb").count() == 1
    row.locator("form.erase input[name=confirm]").check()
    row.locator("form.erase button").click()
    page.locator(".flash.ok").filter(has_text="erased").wait_for()
    assert page.locator("#subjects tr", has_text="W-77").count() == 0
    ctx.close()

    ctx, page = login(browser, base, "auditor")
    page.get_by_role("link", name="Audit").click()
    page.wait_for_url("**/console/audit")
    page.get_by_role("link", name="Verify the chain").click()
    page.locator("#audit-verify").filter(has_text="intact").wait_for()
    assert "subject.erase" in page.locator("#audit-entries").inner_text()
    assert page.locator("form[action*='adjudicate']").count() == 0
    ctx.close()
