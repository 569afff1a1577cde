"""``openlfr calibrate --scoring-model``: the packaged scoring model checked on local identity folders
(a slice of ../shared/data/lfw-dev: identities A-C), and stored with the check for a deployment."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from openlfr.evaluate.lfw_errata import merge_same_person
from openlfr.transparency import model_check as mc
from openlfr.transparency.calibrate import CalibrationError
from dbtesting import fast_passwords  # noqa: F401  (fixture)

N, TARGET = 20, 0.001


def test_same_person_pairs_merge_into_one_identity():
    found = {"A": [Path("A/1"), Path("A/2")], "B": [Path("B/1")], "C": [Path("C/1")], "D": [Path("D/1")]}
    merged, pairs = merge_same_person(found, [("C", "B"), ("B", "D"), ("A", "X")])  # X: no such folder
    assert pairs == [["C", "B"], ["B", "D"]]
    assert merged == {"A": [Path("A/1"), Path("A/2")], "C": [Path("C/1"), Path("B/1"), Path("D/1")]}  # C's image first
    assert merge_same_person(found, []) == (found, [])


@pytest.fixture(scope="module")
def slice_dir(shared_data, tmp_path_factory) -> Path:
    root = shared_data / "lfw-dev" / "images"
    if not root.is_dir():
        pytest.skip("lfw-dev absent")
    out = tmp_path_factory.mktemp("abc")
    for d in sorted(root.iterdir()):
        if d.is_dir() and d.name[0] in "ABC":
            (out / d.name).symlink_to(d, target_is_directory=True)
    return out


@pytest.fixture(scope="module")
def data(slice_dir):
    return mc.gather(slice_dir)  # fused with SFace where it is installed


def _consistent(s: dict) -> None:
    bands = s["bands"]
    assert sum(b["probes"] for b in bands.values()) + s["too_poor_to_search"] == s["images_used"]
    p = s["pooled"]
    assert p["probes"] == s["images_used"] - s["too_poor_to_search"]
    assert p["searches"] == sum(b["searches"] for b in bands.values()) > 0
    assert p["false_alerts"] == sum(b["false_alerts"] for b in bands.values())
    assert p["mated_probes"] == sum(b["mated_probes"] for b in bands.values()) > 0
    for r in [p, *(b for b in bands.values() if b["searches"])]:
        lo, hi = r["fpir_ci95"]
        assert lo <= r["fpir"] <= hi
        if r["fnir"] is not None:
            assert r["fnir_ci95"][0] <= r["fnir"] <= r["fnir_ci95"][1]
    lo = p["fpir_ci95"][0]
    assert s["verdict"] == ("exceeds" if lo > s["target_fpir"] else "holds")
    assert s["summary"].startswith(s["verdict"] + ":") and s["verdict"] in s["line"]
    json.dumps(s)


@pytest.mark.shared
def test_check_on_lfw_slice(data):
    from openlfr.engine.sface import load_second_model
    from openlfr.scoring import load_scoring_model

    s = mc.check(data, N, TARGET)
    _consistent(s)
    assert s["identities"] == len(data.identities) > 500 and s["images_used"] > 1200
    m = load_scoring_model()
    fused = m.fused is not None and load_second_model("auto") is not None
    assert s["second_model"] == ("sface" if fused else None) and s["scores"] == ("fused" if fused else "dlib")
    use = m.fused if fused else m
    assert [b["z_threshold"] for b in s["bands"].values()] == [round(use.z_threshold(i, N, TARGET), 4) for i in range(len(m.bands))]
    assert s["bands"]["A"]["probes"] > 1000  # clean LFW images are mostly band A
    # LFW A-C at 20 subjects: the packaged thresholds hold their target
    assert s["verdict"] == "holds" and s["pooled"]["fpir_ci95"][0] <= TARGET
    assert s["data_threshold"]["z"] is not None and s["model_version"] == m.version
    assert mc.check(data, N, TARGET) | {"created_at": 0} == s | {"created_at": 0}  # seeded
    # a watchlist the folders cannot hold with strangers left out: the number needed
    with pytest.raises(CalibrationError, match=f"needs at least {len(data.identities) + 5} identities"):
        mc.check(data, len(data.identities) - 5, TARGET)
    with pytest.raises(CalibrationError, match="target FPIRs"):
        mc.check(data, N, 0.2)


@pytest.mark.shared
def test_dlib_alone_without_sface(slice_dir, monkeypatch):
    """Without SFace the check measures dlib's own table, as a live run here decides."""
    from openlfr.engine import sface
    from openlfr.scoring import load_scoring_model

    monkeypatch.setattr(sface, "load_second_model", lambda which="auto": None)
    s = mc.check_scoring_model(slice_dir, N, TARGET, replicates=20)
    _consistent(s)
    m = load_scoring_model()
    assert s["second_model"] is None and s["scores"] == "dlib" and s["replicates"] == 20
    assert "dlib" in s["second_model_note"]
    assert s["bands"]["A"]["z_threshold"] == round(m.z_threshold(0, N, TARGET), 4)


def test_too_few_identities_refused_before_embedding(tmp_path):
    for n in ("a", "b", "c"):
        (tmp_path / n).mkdir()
        (tmp_path / n / "1.jpg").write_bytes(b"not looked at")
    with pytest.raises(CalibrationError, match=r"5-subject watchlist needs at least 15 identities .* holds 3"):
        mc.check_scoring_model(tmp_path, 5, TARGET)


@pytest.mark.shared
def test_command_stores_the_model_with_the_check(data, slice_dir, tmp_path, monkeypatch, fast_passwords):  # noqa: F811
    """``--scoring-model --store-for``: the deployment keeps the packaged model's evidence (what a plan
    without --threshold stores) with the local check; audited; shown by the report."""
    from typer.testing import CliRunner

    from openlfr.cli import app
    from openlfr.cli import governance as cli_gov
    from openlfr.governance.testing import PASSWORD, make_world
    from openlfr.scoring import load_scoring_model
    from openlfr.transparency.report import collect, render_text

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    w = make_world(url)
    d = w.plan()
    monkeypatch.setattr(cli_gov, "_clock", lambda: w.clock)
    env = {"OPENLFR_DB": url, "OPENLFR_USER": "operator", "OPENLFR_ACTOR_PASSWORD": PASSWORD}
    args = ["calibrate", "--images", str(slice_dir), "--watchlist-size", str(N), "--target-fpir", str(TARGET),
            "--scoring-model", "--no-progress"]
    r = CliRunner().invoke(app, [*args, "--json", "--store-for", str(d)], env=env)
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["kind"] == mc.KIND and s["stored_for"] == d and s["evidence_kind"] == "openlfr scoring model"
    assert s["pooled"] == mc.check(data, N, TARGET)["pooled"]
    dep = w.gov.get_deployment(w["auditor"], d)
    ev = dep["threshold_evidence"]
    plan_ev = load_scoring_model().evidence(N, TARGET)
    assert ev["kind"] == "openlfr scoring model" and {k: ev[k] for k in plan_ev} == json.loads(json.dumps(plan_ev))
    assert dep["threshold"] == ev["threshold"]
    assert ev["local_check"]["verdict"] == s["verdict"] and ev["local_check_line"] == s["line"]
    buf = io.StringIO()
    w.gov.export_audit(w["auditor"], buf)
    audit = [x for x in map(json.loads, buf.getvalue().splitlines()) if x.get("action") == "deployment.threshold"]
    assert audit and audit[-1]["details"]["watchlist_size"] == N and audit[-1]["details"]["target_fpir"] == TARGET
    text = render_text(collect(w.gov, w["auditor"], d))
    assert f"Local check: {s['line']}" in text and f"checked on local data ({s['identities']} identities): {s['verdict']}" in text
    # plain text, and the raw calibration's options refused beside --scoring-model
    r = CliRunner().invoke(app, [*args, "--replicates", "10"])
    assert r.exit_code == 0, r.output
    assert "band A:" in r.stdout and "too poor to search:" in r.stdout and "verdict: holds:" in r.stdout
    r = CliRunner().invoke(app, [*args, "--method", "direct"])
    assert r.exit_code == 2 and "--method" in r.output
