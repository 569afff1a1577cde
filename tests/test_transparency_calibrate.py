"""Threshold calibration: exact values on constructed descriptors, and a slice of ../shared/data/lfw-dev."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from openlfr.transparency import calibrate as cal
from openlfr.transparency.differentials import counts_from_calibration, group_rates
from dbtesting import fast_passwords  # noqa: F401  (fixture)
from openlfr.transparency.rates import wilson_interval


def line_set(points: dict[str, list[float]]) -> cal.CalibrationSet:
    """Identities on a line (descriptor = (x, 0, ..., 0)): distances are |x - y|, exactly (dyadic x).

    The first point of each identity is its reference image (and also a probe).
    """
    names = list(points)
    refs, probes, pid, is_ref, paths = [], [], [], [], []
    for i, n in enumerate(names):
        for j, x in enumerate(points[n]):
            v = np.zeros(128, np.float32)
            v[0] = x
            if j == 0:
                refs.append(v)
            probes.append(v)
            pid.append(i)
            is_ref.append(j == 0)
            paths.append(Path(f"/data/{n}/{n}_{j + 1:04d}.jpg"))
    return cal.CalibrationSet(
        identities=names, ref_identity=np.arange(len(names)), ref_paths=[p for p, r in zip(paths, is_ref) if r],
        refs=np.stack(refs), probe_identity=np.array(pid), probe_paths=paths, probes=np.stack(probes),
        probe_is_ref=np.array(is_ref), root="/data")


# Four people: A at 0 (images at 0.25, 0.5), B at 1 (1.4375), C at 2 (one image), D at 3 (2.625).
FOUR = {"A": [0.0, 0.25, 0.5], "B": [1.0, 1.4375], "C": [2.0], "D": [3.0, 2.625]}


def test_scores_exact():
    sc = cal.score(line_set(FOUR))
    assert sorted(sc.mated.tolist()) == [0.25, 0.375, 0.4375, 0.5]
    # every reference against every image of every other person: 5 + 6 + 7 + 6
    assert sc.n_nonmated == 24
    assert sc.nonmated_tail.tolist() == [0.5, 0.5625, 0.625]  # below 0.75 (B's ref vs A at 0.25 is exactly 0.75)
    assert cal.single_fmr(sc, 0.5) == 0.0  # accept distance < t
    assert cal.single_fmr(sc, 0.6) == pytest.approx(2 / 24)
    assert cal.single_fmr(sc, 1.0) == pytest.approx(4 / 24)  # above the exact tail: from the histogram
    assert sc.closest_nonmated[0] == {"reference": "B", "probe_identity": "A", "probe_image": "A/A_0003.jpg", "distance": 0.5}


def test_independence_formula_and_threshold():
    sc = cal.score(line_set(FOUR))
    assert cal.fpir_independent(2 / 24, 2) == pytest.approx(1 - (22 / 24) ** 2)
    assert cal.fpir_independent(0.0, 1000) == 0.0
    # p* = 1 - (1 - F)^(1/N): target F = 1 - 0.96^2 gives p* = 0.04, so no pair of the 24 may fall below
    target = 1 - 0.96 ** 2
    assert cal.per_comparison_target(target, 2) == pytest.approx(0.04)
    assert cal.threshold_independent(sc, 2, target) == (0.5, 0)
    # p* = 0.05: one pair may fall below
    assert cal.threshold_independent(sc, 2, 1 - 0.95 ** 2) == (0.5625, 1)


def test_calibrate_small_set_exact():
    cs = line_set(FOUR)
    c = cal.calibrate(cs, 2, 1 - 0.96 ** 2)
    s = c.summary
    assert s["threshold"] == 0.5 and s["threshold_independent"] == 0.5
    assert s["direct"] is None and "independence formula only" in s["notes"][0]  # 4 identities: no simulation
    assert s["tpir"] == 0.75 and s["tpir_detail"]["hits"] == 3 and s["tpir_detail"]["mated_probes"] == 4
    w = wilson_interval(3, 4)
    assert s["tpir_detail"]["ci95_wilson"] == [round(w[0], 5), round(w[1], 5)]
    assert s["tpir_ci95"] is not None
    assert s["fpir_independent_at_threshold"] == 0.0
    assert s["identities"] == 4 and s["mated_scores"] == 4 and s["nonmated_scores"] == 24 and s["watchlist_size"] == 2
    pts = {p["threshold"]: p for p in s["operating_points"]}
    assert pts[0.6]["tpir"] == 1.0 and pts[0.6]["fmr_single"] == pytest.approx(2 / 24)
    assert pts[0.4]["tpir"] == 0.5
    json.dumps(s)  # the evidence is JSON
    with pytest.raises(cal.CalibrationError, match="needs more identities"):
        cal.calibrate(cs, 2, 0.01, method="direct")
    with pytest.raises(cal.CalibrationError):
        cal.calibrate(cs, 0, 0.01)
    # per identity counts for the differentials (no simulation: single-comparison FMR)
    counts = counts_from_calibration(c, 0.5)
    assert counts["fnir"] == {"A": (1, 2), "B": (0, 1), "D": (0, 1)}
    assert counts["fmr"]["A"] == (0, 9)  # A's 3 images against B, C and D's references
    assert counts_from_calibration(c, 0.6)["fmr"]["A"] == (1, 9)


def test_same_person_pairs_left_out(tmp_path):
    """Label errors (one person under two names) are neither mated nor non-mated."""
    f = tmp_path / "same.csv"
    f.write_text("identity_a,identity_b\n# B's second folder is A\nB,A\n")
    pairs = cal.read_same_person(f)
    assert pairs == [("B", "A")]
    sc = cal.score(line_set(FOUR), pairs)
    assert sc.n_nonmated == 24 - 3 - 2  # B's reference x A's 3 images, A's reference x B's 2 images
    assert sc.nonmated_tail.tolist() == [0.5625, 0.625]
    assert sorted(sc.mated.tolist()) == [0.25, 0.375, 0.4375, 0.5]
    s = cal.calibrate(line_set(FOUR), 2, 1 - 0.96 ** 2, same_person=pairs).summary
    assert s["threshold"] == 0.5625 and s["same_person_excluded"] == [["B", "A"]]
    # a non-mated pair closer than 0.2 is flagged as a probable label error
    near = cal.calibrate(line_set({"A": [0.0, 0.25], "B": [0.125, 0.5], "C": [3.0, 3.25]}), 1, 0.5).summary
    assert any("very likely the same photo or the same person under two names" in n for n in near["notes"])
    f.write_text("A\n")
    with pytest.raises(cal.CalibrationError, match="identity_a,identity_b"):
        cal.read_same_person(f)


def chain(n: int) -> dict[str, list[float]]:
    """n people 1 apart, each with a second image 0.25 towards the next person (0.75 from them)."""
    return {f"P{i:02d}": [float(i), i + 0.25] for i in range(n)}


def test_direct_simulation_matches_brute_force():
    cs = line_set(chain(16))
    sc = cal.score(cs)
    sim = cal.simulate(cs, sc, 3, replicates=7, seed=3)
    assert sim is not None and sim.replicates == 7 and len(sim.galleries) == 7
    for k, g in enumerate(sim.galleries):
        assert len(g) == 3
        sel = sim.replicate == k
        for p, b in zip(sim.probe[sel], sim.best[sel]):
            assert cs.probe_identity[p] not in g  # strangers only
            assert b == pytest.approx(min(abs(cs.probes[p, 0] - cs.refs[i, 0]) for i in g))
        assert sel.sum() == 2 * (16 - 3)
    # at 0.8, a stranger's second image alerts exactly when the next person is in the gallery
    expect = np.mean([float(cs.probe_identity[p] + 1 in sim.galleries[r] and not cs.probe_is_ref[p])
                      for p, r in zip(sim.probe, sim.replicate)])
    assert sim.fpir(0.8) == pytest.approx(expect)
    c = cal.calibrate(cs, 3, 0.05, replicates=7, seed=3)
    s = c.summary
    assert s["direct"]["trials"] == 7 * 26 and s["direct"]["reliable"] is False  # 182 searches x 0.05 < 10
    assert s["threshold"] == min(s["threshold_independent"], s["direct"]["threshold"])
    assert s["tpir"] == 1.0  # every second image is 0.25 from its reference
    d = group_rates({f"P{i:02d}": "even" if i % 2 == 0 else "odd" for i in range(16)}, counts_from_calibration(c, 0.8), 0.8)
    assert set(d.rates) == {"fnir", "fpir"}
    assert cal.calibrate(cs, 3, 0.05, replicates=7, seed=3).summary["threshold"] == s["threshold"]  # seeded


# --------------------------------------------------------------------------- real data


def lfw_slice(shared_data: Path, n: int = 120) -> tuple[Path, dict[str, list[Path]]]:
    from openlfr.evaluate.identify import scan_identities

    root = shared_data / "lfw-dev" / "images"
    if not root.is_dir():
        pytest.skip("lfw-dev absent")
    found = scan_identities(root)
    return root, {k: found[k] for k in list(found)[:n]}  # Aaron_* .. Andrei_*: 274 images


@pytest.fixture(scope="module")
def lfw_cal(shared_data):
    root, ids = lfw_slice(shared_data)
    cs = cal.embed_identities(ids, root=root)
    return cal.calibrate(cs, 20, 0.01)


@pytest.mark.shared
def test_calibration_on_lfw_slice(lfw_cal):
    s = lfw_cal.summary
    assert s["identities"] == 120 and s["images_used"] >= 270 and s["mated_identities"] >= 35
    assert s["direct"] is not None and s["direct"]["replicates"] == 50
    # distances: dlib's model separates people at about 0.6; for 20 subjects at FPIR 1% the threshold is lower
    assert 0.42 < s["threshold"] < 0.6
    assert s["fpir_independent_at_threshold"] <= 0.01 + 1e-12 or s["threshold_from"].startswith("direct")
    assert s["fpir_direct_at_threshold"] <= 0.012
    lo, hi = s["tpir_ci95"]
    assert 0.75 < s["tpir"] <= 1.0 and lo <= s["tpir"] <= hi
    # a larger watchlist needs a smaller threshold for the same FPIR, and loses TPIR
    big = cal.calibrate(lfw_cal.data, 100, 0.01, scores=lfw_cal.scores)
    assert big.summary["threshold"] < s["threshold"] and big.summary["tpir"] <= s["tpir"]
    # the three operating points of dlib's scale are reported
    assert {0.4, 0.5, 0.6} <= {p["threshold"] for p in s["operating_points"]}
    png = cal.plot_calibration(lfw_cal)
    assert png[:4] == b"\x89PNG"


@pytest.mark.shared
def test_calibrate_command_and_store_for(lfw_cal, shared_data, tmp_path, monkeypatch, fast_passwords):  # noqa: F811
    """The command on the same slice (symlinked identity folders), with groups, stored with a planned deployment."""
    from typer.testing import CliRunner

    from openlfr.cli import app
    from openlfr.cli import governance as cli_gov
    from openlfr.governance.testing import PASSWORD, make_world

    root, ids = lfw_slice(shared_data)
    data = tmp_path / "slice"
    data.mkdir()
    for name in ids:
        (data / name).symlink_to(root / name, target_is_directory=True)
    groups = tmp_path / "groups.csv"
    groups.write_text("identity,group\n" + "".join(f"{n},{'G1' if i % 2 else 'G2'}\n" for i, n in enumerate(ids)))
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    w = make_world(url)
    d = w.plan()
    monkeypatch.setattr(cli_gov, "_clock", lambda: w.clock)
    env = {"OPENLFR_DB": url, "OPENLFR_USER": "operator", "OPENLFR_ACTOR_PASSWORD": PASSWORD}
    r = CliRunner().invoke(app, ["calibrate", "--images", str(data), "--watchlist-size", "20", "--target-fpir", "0.01",
                                 "--groups", str(groups), "--json", "--no-progress", "--store-for", str(d)], env=env)
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["threshold"] == lfw_cal.summary["threshold"] and s["tpir"] == lfw_cal.summary["tpir"]
    assert set(s["differentials"]["metrics"]) == {"fnir", "fpir"}
    assert all(g["group"] in ("G1", "G2") for g in s["differentials"]["metrics"]["fnir"])
    dep = w.gov.get_deployment(w["auditor"], d)
    assert dep["threshold"] == s["threshold"] and dep["threshold_evidence"]["tpir"] == s["tpir"]
    assert dep["threshold_evidence"]["watchlist_size"] == 20
    # plain text
    r = CliRunner().invoke(app, ["calibrate", "--images", str(data), "--watchlist-size", "20", "--target-fpir", "0.01",
                                 "--no-progress"])
    assert r.exit_code == 0, r.output
    assert f"threshold for a 20-subject watchlist at FPIR 0.01: {s['threshold']:.4f}" in r.stdout
    assert "expected TPIR" in r.stdout and "95% CI" in r.stdout
