"""Demographic differentials: exact rates on constructed counts, ratios, intervals, small samples."""

from __future__ import annotations

import pytest

from openlfr.transparency.differentials import GroupsError, describe, group_rates, plot_differentials, read_groups


def _world():
    groups, fnir, fpir, fmr0 = {}, {}, {}, {}
    for i in range(12):
        groups[f"a{i}"] = "A"
        fnir[f"a{i}"] = (1 if i < 6 else 0, 5)  # 6 of 60 = 10%
        fpir[f"a{i}"] = (1, 100)  # 12 of 1,200 = 1%
        fmr0[f"a{i}"] = (0, 100)  # no error at all
        groups[f"b{i}"] = "B"
        fnir[f"b{i}"] = (2, 5)  # 24 of 60 = 40%, every identity alike
        fpir[f"b{i}"] = (0 if i % 2 else 2, 100)  # 12 of 1,200 = 1%
        fmr0[f"b{i}"] = (1, 100)
    for i in range(3):  # a small group
        groups[f"c{i}"] = "C"
        fnir[f"c{i}"] = (1, 4)
        fpir[f"c{i}"] = (0, 100)
        fmr0[f"c{i}"] = (0, 100)
    fnir["nobody"] = (1, 3)  # an identity the CSV does not assign
    return groups, {"fnir": fnir, "fpir": fpir}, fmr0


def test_rates_ratios_and_small_samples():
    groups, counts, _ = _world()
    d = group_rates(groups, counts, 0.5, seed=1)
    fn = {r.group: r for r in d.rates["fnir"]}
    assert (fn["A"].errors, fn["A"].trials, fn["A"].identities) == (6, 60, 12)
    assert fn["A"].rate == pytest.approx(0.10) and fn["B"].rate == pytest.approx(0.40) and fn["C"].rate == pytest.approx(0.25)
    assert d.best["fnir"] == "A" and fn["A"].ratio_to_best == 1.0
    assert fn["B"].ratio_to_best == pytest.approx(4.0)
    lo, hi = fn["B"].ratio_ci95
    assert 1.0 < lo < 4.0 < hi
    assert fn["B"].verdict == "higher than the reference group"
    assert fn["B"].ci95 == pytest.approx((0.4, 0.4))  # every B identity has 2 of 5: no spread to resample
    assert fn["A"].ci95[0] < 0.10 < fn["A"].ci95[1]
    # the small group: a rate, an interval, no ratio and no verdict beyond "too small"
    assert not fn["C"].sufficient and fn["C"].ratio_to_best is None
    assert "3 identities (at least 10 needed)" in fn["C"].why_insufficient
    assert "12 trials (at least 30 needed)" in fn["C"].why_insufficient
    assert any(s.startswith("FNIR for group C: 3 of 12 (25.0%) from 3 identities - too small a sample to conclude anything")
               for s in d.statements)
    assert any("FNIR for group B is 4.00 times that of group A" in s and "a differential" in s for s in d.statements)
    fp = {r.group: r for r in d.rates["fpir"]}
    assert fp["A"].rate == pytest.approx(0.01) and fp["B"].rate == pytest.approx(0.01)
    other = fp["B"] if d.best["fpir"] == "A" else fp["A"]
    assert other.ratio_to_best == pytest.approx(1.0)
    assert other.ratio_ci95[0] < 1.0 < other.ratio_ci95[1]
    assert other.verdict == "no clear difference in these data"
    assert any("which includes 1): no clear difference in these data - not proof that there is none" in s for s in d.statements)
    assert d.unassigned == 1 and any("1 identities have no group" in s for s in d.statements)
    j = d.to_json()
    assert j["best_group"]["fnir"] == "A" and j["metrics"]["fnir"][0]["group"] == "A"
    assert "too small to conclude" in "\n".join(describe(d))


def test_same_seed_same_intervals():
    groups, counts, _ = _world()
    a = group_rates(groups, counts, 0.5, seed=7).to_json()
    b = group_rates(groups, counts, 0.5, seed=7).to_json()
    assert a == b


def test_reference_group_without_errors_gives_no_ratio():
    groups, _, fmr0 = _world()
    d = group_rates(groups, {"fpir": fmr0}, 0.5, min_expected_errors=0)
    r = {x.group: x for x in d.rates["fpir"]}
    assert d.best["fpir"] == "A" and r["A"].rate == 0.0
    assert r["B"].ratio_to_best is None and "no ratio can be given" in r["B"].verdict


def test_too_few_expected_errors_is_inconclusive():
    groups = {f"x{i}": "X" for i in range(20)} | {f"y{i}": "Y" for i in range(20)}
    counts = {"fpir": {**{f"x{i}": (0, 10) for i in range(20)}, **{f"y{i}": (1 if i == 0 else 0, 10) for i in range(20)}}}
    d = group_rates(groups, counts, 0.5)
    for r in d.rates["fpir"]:
        assert not r.sufficient and "errors expected at the overall rate" in r.why_insufficient
    assert d.best["fpir"] is None


def test_read_groups(tmp_path):
    p = tmp_path / "g.csv"
    p.write_text("identity,group\nAaron_Peirsol,G1\nAbel_Pacheco,G2\n\n")
    assert read_groups(p) == {"Aaron_Peirsol": "G1", "Abel_Pacheco": "G2"}
    p.write_text("name,sex,group\nX,f,G1\n")
    assert read_groups(p) == {"X": "G1"}
    for text, msg in (("who,group\nX,G1\n", "identity column"), ("identity,group\nX,G1\nX,G2\n", "two groups"),
                      ("identity,group\nX,\n", "empty identity or group"), ("", "empty")):
        p.write_text(text)
        with pytest.raises(GroupsError, match=msg):
            read_groups(p)


def test_plot(tmp_path):
    groups, counts, _ = _world()
    png = plot_differentials(group_rates(groups, counts, 0.5), tmp_path / "d.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "d.png").read_bytes() == png
