"""Deployment reports from a real deployment made through the governance services (SQLite, and
PostgreSQL when OPENLFR_TEST_PG is set): exact figures, HTML (parsed) and PDF (text extracted),
volunteers kept apart, figures surviving the retention purge, a broken audit chain flagged."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta
from html.parser import HTMLParser

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from openlfr.cli import app
from openlfr.cli import governance as cli_gov
from openlfr.governance import Actor, GovernanceError
from openlfr.governance.testing import PASSWORD, image, make_world
from openlfr.store.models import AuditEvent
from dbtesting import db_url, fast_passwords  # noqa: F401  (fixtures)
from openlfr.transparency.report import collect, render_html, render_pdf, render_text, sections

EVIDENCE = {
    "kind": "openlfr threshold calibration", "threshold": 0.5, "watchlist_size": 4, "target_fpir": 0.001,
    "threshold_from": "direct simulation (the smaller)", "identities": 2829, "images_used": 6157, "images": "lfw-dev",
    "tpir": 0.8, "tpir_ci95": [0.7, 0.9], "fpir_independent_at_threshold": 0.0012, "fpir_direct_at_threshold": 0.0009,
    "curve": {"thresholds": [0.4, 0.5, 0.6], "fpir_independent": [0.0001, 0.0012, 0.05], "fpir_direct": [0.0001, 0.0009, 0.04],
              "tpir": [0.4, 0.8, 0.95]},
}


@pytest.fixture
def deployment(db_url, fast_passwords):  # noqa: F811
    """A test deployment with three subjects and one volunteer, alerts adjudicated at known delays."""
    w = make_world(db_url, subjects=3)
    vol = w.enrol("V1", seed=50, volunteer=True)
    d = w.plan(length=timedelta(hours=4))
    w.gov.store_threshold_evidence(w["operator"], d, EVIDENCE)
    w.gov.authorise_deployment(w["authorising_officer"], d, "necessary and proportionate")
    with pytest.raises(GovernanceError, match="only while it is planned"):
        w.gov.store_threshold_evidence(w["operator"], d, EVIDENCE)
    w.clock.set(datetime.fromisoformat(w.gov.get_deployment(w["auditor"], d)["starts_at"]))
    w.gov.start_deployment(w["operator"], d)
    live = Actor.system("live")
    w.gov.count_faces_seen(live, d, "cam-a", 6000)
    w.gov.count_faces_seen(live, d, "cam-b", 4000)
    ops = [w.alert(d, w.subjects[k % 3], track=k + 1, camera="cam-a" if k < 4 else "cam-b") for k in range(6)]
    va, vb = w.alert(d, vol, track=20), w.alert(d, vol, track=21)
    w.clock.advance(minutes=2)
    w.gov.adjudicate(w["operator"], ops[0], "true")
    w.gov.adjudicate(w["operator"], ops[1], "true")
    w.clock.advance(minutes=3)
    for a in ops[2:5]:
        w.gov.adjudicate(w["operator"], a, "false")
    w.gov.adjudicate(w["operator"], va, "true")
    w.clock.advance(minutes=5)
    w.gov.adjudicate(w["operator"], vb, "false")  # a passer-by flagged against a volunteer's image
    # ops[5] is left unadjudicated
    w.gov.record_outcome(w["engagement_officer"], ops[0], "confirmed", "arrest")
    w.gov.record_outcome(w["engagement_officer"], ops[1], "unconfirmed", "no_engagement")
    with pytest.raises(GovernanceError, match="volunteer"):
        w.gov.record_outcome(w["engagement_officer"], va, "confirmed", "arrest")
    w.gov.record_outcome(w["engagement_officer"], va, "confirmed", "no_further_action")  # kept out of outcomes
    w.gov.record_volunteer_passes(w["operator"], d, vol, 2)
    with pytest.raises(GovernanceError, match="not a volunteer"):
        w.gov.record_volunteer_passes(w["operator"], d, w.subjects[0], 1)
    w.clock.advance(hours=4)  # past the end: the next thing that runs ends it and deletes the snapshot
    w.gov.housekeeping()
    w.d, w.vol, w.ops = d, vol, ops
    return w


def check_figures(data: dict) -> None:
    f = data["figures"]
    assert f["faces_seen"] == 10_000
    assert f["false_alerts"] == 4 and f["false_alerts_against_volunteers"] == 1
    assert f["false_alert_rate"] == pytest.approx(4 / 10_000)
    assert f["true_alerts"] == 2 and f["operational_false_alerts"] == 3
    assert f["alert_precision"] == pytest.approx(2 / 5)
    assert f["field_tpir"] == pytest.approx(1 / 2)
    al = data["alerts"]
    assert al["operational"] == {"total": 6, "true_alerts": 2, "false_alerts": 3, "unadjudicated": 1}
    assert al["table"]["true_alert"] == {"confirmed": 1, "unconfirmed": 1, "not_recorded": 0}
    assert al["table"]["false_alert"] == {"confirmed": 0, "unconfirmed": 0, "not_recorded": 3}
    assert al["table"]["unadjudicated"]["not_recorded"] == 1
    assert al["by_camera"] == {"cam-a": 4, "cam-b": 2}
    assert (al["volunteers"]["total"], al["volunteers"]["true_alerts"], al["volunteers"]["false_alerts"],
            al["volunteers"]["passes"]) == (2, 1, 1, 2)
    assert data["outcomes"] == {"arrest": 1, "other_action": 0, "no_further_action": 0, "no_engagement": 1}
    adj = data["adjudication"]  # first decisions at 2, 2, 5, 5, 5, 5 and 10 minutes; one alert never adjudicated
    assert (adj["adjudicated"], adj["of"]) == (7, 8)
    assert adj["median_s"] == 300 and adj["min_s"] == 120 and adj["max_s"] == 600
    assert data["watchlist"]["subjects"] == 4 and data["watchlist"]["volunteers"] == 1
    assert data["watchlist"]["categories"] == {"volunteer": 1, "wanted_by_courts": 3}
    assert data["threshold"]["value"] == 0.5 and data["threshold"]["expected_fpir"] == 0.0009
    assert "calibrated on 2829 identities" in data["threshold"]["how"]
    b = data["base_rates"]
    assert b["expected"]["expected_false_alerts"] == pytest.approx((10_000 - 2.5) * 0.0009)
    assert b["assumptions"]["watchlisted_passers_estimated"] == pytest.approx(2 / 0.8)
    dep = data["deployment"]
    assert dep["authorisations"][0]["officer"] == "authorising_officer" and dep["dpia_ref"] == "DPIA-2030-01"
    assert data["audit"]["ok"]


def test_report_figures_html_pdf(deployment, tmp_path):
    w, d = deployment, deployment.d
    r = collect(w.gov, w["auditor"], d)
    check_figures(r.data)
    assert [x["why"] for x in r.data["deletions"]] == ["deployment ended"]
    text = render_text(r)
    for s in ("False alert rate (false alerts / faces seen): 0.0400% = 4 / 10,000",
              "Alert precision (true alerts / adjudicated alerts): 40.0% = 2 / 5",
              "Field TPIR (volunteer passes that alerted / passes): 50.0%",
              "Authorised by: authorising_officer", "Outcomes: arrest 1, other action 0, no further action 0, no engagement 1",
              "Time to adjudication: median 5 min 0 s", "watchlist snapshot (4 subjects, 4 templates) - deployment ended"):
        assert s in text, s

    html = render_html(r)
    page = Page(html)
    assert page.text("false-alert-rate").startswith("False alert rate = false alerts / faces seen 0.0400%")
    assert page.attrs_of("div", "data-value")[0] == "0.0004"
    assert "40.0%" in page.text("alert-precision") and "2 true / 5 adjudicated alerts" in page.text("alert-precision")
    assert page.text("faces-seen-total") == "10000" and page.text("threshold") == "0.5000"
    assert page.text("watchlist-size") == "4" and page.text("outcome-arrest") == "1"
    assert "authorising_officer" in page.text("authorised-by")
    assert page.text("field-tpir").startswith("50.0%")
    assert "3 / 0 / 0" not in page.text("row-false_alert") and page.text("row-false_alert").split()[-1] == "3"
    assert "deployment ended" in page.text("deletions")
    assert "Both figures are needed" in page.text("observed-explanation")
    assert len(page.images) == 5 and all(src.startswith("data:image/png;base64,") for src in page.images)

    from pypdf import PdfReader

    pdf = render_pdf(r, tmp_path / "report.pdf")
    reader = PdfReader(str(pdf))
    # the charts flow with their text: no page holds a chart alone (there were 5 charts on 5 blank pages)
    assert len(reader.pages) <= 4
    texts = [p.extract_text() for p in reader.pages]
    assert all(len(t.split()) > 40 for t in texts[:-1]), [len(t.split()) for t in texts]
    pdf_text = "\n".join(texts)
    assert pdf_text.index("Total faces seen: 10,000") < pdf_text.index("Faces seen per camera") \
        < pdf_text.index("Alerts and outcomes")  # the faces chart right after its section
    for s in ("False alert rate (false alerts / faces seen): 0.0400% = 4 / 10,000",
              "Alert precision (true alerts / adjudicated alerts): 40.0% = 2 / 5",
              "Total faces seen: 10,000", "Authorised by: authorising_officer", "Field TPIR", "Threshold: 0.5000",
              "Time to adjudication", "Threshold calibration"):
        assert s in pdf_text, s


def test_figures_survive_the_retention_purge(deployment):
    w, d = deployment, deployment.d
    w.clock.advance(days=40)
    w.gov.housekeeping()
    assert w.gov.get_deployment(w["auditor"], d)["alerts"]["total"] == 0  # the records are gone
    r = collect(w.gov, w["auditor"], d)
    check_figures(r.data)  # the audit log kept that they happened
    purged = [x for x in r.data["deletions"] if x["why"].startswith("retention")]
    assert len(purged) == 1 and purged[0]["what"].startswith("8 alert(s)")
    assert any("past the retention period have been deleted" in n for n in r.data["notes"])


def test_erased_subject_alerts_reported_as_deleted(deployment):
    w, d = deployment, deployment.d
    w.gov.erase_subject(w["watchlist_manager"], w.subjects[2])  # its two alerts (ops[2], ops[5]) go with it
    r = collect(w.gov, w["auditor"], d)
    erased = [x for x in r.data["deletions"] if x["why"] == "subject erased from the watchlist"]
    assert len(erased) == 1 and erased[0]["what"].startswith("2 alert(s)")
    assert r.data["figures"]["faces_seen"] == 10_000 and r.data["alerts"]["operational"]["total"] == 6
    assert not r.data["notes"][0].startswith("the database holds")  # records and log agree


def test_broken_audit_chain_is_flagged(deployment):
    w, d = deployment, deployment.d
    with w.gov.db.transaction() as s:
        s.execute(update(AuditEvent).where(AuditEvent.action == "alert.adjudicate").values(details='{"decision":"true_alert"}'))
    r = collect(w.gov, w["auditor"], d)
    assert not r.data["audit"]["ok"] and r.data["notes"][0].startswith("THE AUDIT CHAIN IS BROKEN")
    assert "BROKEN" in render_text(r)
    assert 'id="audit-broken"' in render_html(r)


def test_report_command(deployment, tmp_path, monkeypatch):
    w, d = deployment, deployment.d
    monkeypatch.setattr(cli_gov, "_clock", lambda: w.clock)
    env = {"OPENLFR_DB": w.gov.db.url, "OPENLFR_USER": "auditor", "OPENLFR_ACTOR_PASSWORD": PASSWORD}
    html, pdf = tmp_path / "r.html", tmp_path / "r.pdf"
    r = CliRunner().invoke(app, ["report", str(d), "--html", str(html), "--pdf", str(pdf), "--json"], env=env)
    assert r.exit_code == 0, r.output
    check_figures(json.loads(r.stdout))
    assert html.read_text().startswith("<!DOCTYPE html>") and pdf.read_bytes()[:5] == b"%PDF-"
    r = CliRunner().invoke(app, ["report", str(d)], env=env)
    assert r.exit_code == 0 and "False alert rate (false alerts / faces seen): 0.0400%" in r.stdout
    # an operator may not read the audit log, so not the report
    r = CliRunner().invoke(app, ["report", str(d)], env=env | {"OPENLFR_USER": "operator"})
    assert r.exit_code == 4 and "audit.read" in r.stderr
    # deployment show keeps volunteers apart as well
    r = CliRunner().invoke(app, ["deployment", "show", str(d), "--json"], env=env)
    v = json.loads(r.stdout)
    assert v["alerts"]["true_alerts"] == 2 and v["volunteers"]["true_alerts"] == 1 and v["volunteers"]["field_tpir"] == 0.5
    assert v["alert_precision"] == pytest.approx(0.4) and v["false_alert_rate"] == pytest.approx(4 / 10_000)
    assert v["alerts"]["outcomes"] == {"arrest": 1, "no_engagement": 1}


def test_sections_without_alerts(db_url, fast_passwords):  # noqa: F811
    """A deployment that never ran: no figure is made up."""
    w = make_world(db_url, subjects=1)
    d = w.plan()
    r = collect(w.gov, w["auditor"], d)
    f = r.data["figures"]
    assert f["false_alert_rate"] is None and f["alert_precision"] is None and f["field_tpir"] is None
    text = render_text(r)
    assert "False alert rate (false alerts / faces seen): -" in text and "not authorised" in text
    assert "packaged LFW impostor table" in r.data["threshold"]["how"]
    assert dict(sections(r))["What was deleted and when"] == ["Nothing deleted yet."]


def test_volunteer_rules(db_url, fast_passwords):  # noqa: F811
    w = make_world(db_url, subjects=1)
    with pytest.raises(GovernanceError, match="volunteer's category"):
        w.gov.enrol_subject(w["watchlist_manager"], w.watchlist, "V9", "Vol", "wanted_by_courts", "test",
                            w.clock.now() + timedelta(days=3), [image(9)],
                            volunteer=True)
    with pytest.raises(GovernanceError, match="enrol with volunteer=True"):
        w.enrol("V8", seed=8, category="volunteer")
    v = w.enrol("V7", seed=7, volunteer=True)
    subj = {s["id"]: s for s in w.gov.list_subjects(w["auditor"], w.watchlist)}
    assert subj[v]["volunteer"] is True and subj[v]["category"] == "volunteer" and subj[w.subjects[0]]["volunteer"] is False
    d = w.plan()
    with pytest.raises(GovernanceError, match="once it has run"):
        w.gov.record_volunteer_passes(w["operator"], d, v, 1)
    buf = io.StringIO()
    w.gov.export_audit(w["auditor"], buf)
    created = [json.loads(x) for x in buf.getvalue().splitlines() if f'"subject:{v}"' in x]
    assert created[0]["details"]["volunteer"] is True and "V7" not in buf.getvalue()


class Page(HTMLParser):
    """Text by element id, attributes, and image sources of an HTML page."""

    def __init__(self, html: str):
        super().__init__()
        self.ids: dict[str, list[str]] = {}
        self.open: list[tuple[str, str | None]] = []
        self.images: list[str] = []
        self.all_attrs: list[tuple[str, dict]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.all_attrs.append((tag, a))
        if tag == "img":
            self.images.append(a.get("src", ""))
            return
        if tag in ("br", "meta"):
            return
        self.open.append((tag, a.get("id")))
        if a.get("id"):
            self.ids.setdefault(a["id"], [])

    def handle_endtag(self, tag):
        while self.open:
            t, _ = self.open.pop()
            if t == tag:
                break

    def handle_data(self, data):
        for _, i in self.open:
            if i:
                self.ids[i].append(data)

    def text(self, i: str) -> str:
        return " ".join(" ".join(self.ids[i]).split())

    def attrs_of(self, tag: str, name: str) -> list[str]:
        return [a[name] for t, a in self.all_attrs if t == tag and name in a]


def test_volunteer_commands(db_url, fast_passwords, monkeypatch, tmp_path):  # noqa: F811
    """``watchlist add --volunteer`` and ``deployment volunteer-passes``."""
    import numpy as np

    from openlfr.governance.testing import FAKE_JPEG, template
    from openlfr.watchlist.enrol import AcceptedImage, EnrolmentReport
    from openlfr.watchlist.model import Subject, Watchlist

    def fake_enrol(ref, name, cat, paths, min_face):
        rep = EnrolmentReport("fake")
        rep.accepted.append(AcceptedImage(str(paths[0]), ref, 0.9, (0, 0, 99, 99)))
        return Watchlist([Subject(ref, name, cat, [str(p) for p in paths])], np.stack([template(5)]), np.array([0]),
                         np.array([0.9]), [str(paths[0])]), rep

    w = make_world(db_url, subjects=1)
    monkeypatch.setattr(cli_gov, "_clock", lambda: w.clock)
    monkeypatch.setattr(cli_gov, "_enrol_images", fake_enrol)
    img = tmp_path / "v.jpg"
    img.write_bytes(FAKE_JPEG)
    env = {"OPENLFR_DB": db_url, "OPENLFR_USER": "watchlist_manager", "OPENLFR_ACTOR_PASSWORD": PASSWORD}
    run = CliRunner().invoke
    args = ["watchlist", "add", w.watchlist, str(img), "--ref", "VOL1", "--name", "Volunteer One",
            "--reason", "test deployment volunteer (consent form 12)", "--expires", "+30d"]
    r = run(app, args + ["--volunteer"], env=env)
    assert r.exit_code == 0 and r.stdout.startswith("volunteer "), r.output
    r = run(app, args[:4] + ["--ref", "X2"] + args[6:], env=env)
    assert r.exit_code == 2 and "--category" in r.stderr
    r = run(app, args + ["--volunteer", "--category", "risk_of_harm"], env=env)
    assert r.exit_code == 2
    vol = [s for s in w.gov.list_subjects(w["auditor"], w.watchlist) if s["ref"] == "VOL1"][0]
    assert vol["volunteer"] and vol["category"] == "volunteer"
    d = w.active_deployment()
    env |= {"OPENLFR_USER": "operator"}
    r = run(app, ["deployment", "volunteer-passes", str(d), str(vol["id"]), "--passes", "3"], env=env)
    assert r.exit_code == 0, r.output
    assert w.gov.get_deployment(w["auditor"], d)["volunteers"]["passes"] == 3
    r = run(app, ["deployment", "volunteer-passes", str(d), str(w.subjects[0]), "--passes", "3"], env=env)
    assert r.exit_code == 2 and "not a volunteer" in r.stderr
    r = run(app, ["deployment", "volunteer-passes", str(d), str(vol["id"]), "--passes", "3"],
            env=env | {"OPENLFR_USER": "auditor"})
    assert r.exit_code == 4
