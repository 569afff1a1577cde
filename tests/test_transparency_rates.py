"""Base rates and the published figures: exact values on constructed cases, and the command."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from openlfr.cli import app
from openlfr.transparency.rates import (
    alert_precision,
    expected_alerts,
    explain,
    explain_observed,
    false_alert_rate,
    num,
    one_in,
    pct,
    wilson_interval,
)


def test_design_example_100k_faces():
    """DESIGN.md: 100,000 faces, 10 watchlisted, TPIR 0.7, FPIR 0.001 -> 7 true, ~100 false, precision ~6.5%."""
    r = expected_alerts(100_000, 10, 0.7, 0.001)
    assert r.expected_true_alerts == pytest.approx(7.0, abs=1e-12)
    assert r.expected_false_alerts == pytest.approx(99.99, abs=1e-9)  # the 99,990 who are not watchlisted
    assert r.alert_precision == pytest.approx(7 / 106.99, rel=1e-12)
    assert round(r.alert_precision, 3) == 0.065
    assert r.false_alert_rate == pytest.approx(99.99 / 100_000, rel=1e-12)
    text = explain(r)
    for s in ("100,000 faces", "99,990 do not", "about 7 true alerts", "about 100 false alerts", "6.54%", "0.100%",
              "1 in 1,000", "1 in 10,000 faces", "does not mean that an alert is probably right"):
        assert s in text, s


def test_expected_alerts_edge_cases():
    r = expected_alerts(1000, 0, 0.9, 0.0)
    assert (r.expected_true_alerts, r.expected_false_alerts, r.alert_precision, r.false_alert_rate) == (0, 0, None, 0)
    assert "No alert is expected" in explain(r)
    r = expected_alerts(200, 100, 0.5, 0.1)  # watchlisted people common: precision above a half
    assert (r.expected_true_alerts, r.expected_false_alerts) == (50, 10)
    assert r.alert_precision == pytest.approx(50 / 60)
    assert "more alerts are right than wrong" in explain(r)
    for bad in ((10, 11, 0.5, 0.1), (-1, 0, 0.5, 0.1), (10, 1, 1.5, 0.1), (10, 1, 0.5, -0.1)):
        with pytest.raises(ValueError):
            expected_alerts(*bad)


def test_published_figures():
    assert false_alert_rate(3, 30_000) == pytest.approx(1e-4)
    assert false_alert_rate(3, 0) is None
    assert alert_precision(8, 34) == pytest.approx(8 / 42)  # the 2019 independent review: 8 of 42
    assert alert_precision(0, 0) is None


@pytest.mark.parametrize("k,n", [(0, 10), (8, 42), (42, 42), (1, 30_000), (7, 107), (5, 5)])
def test_wilson_interval_matches_scipy(k, n):
    from scipy.stats import binomtest

    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(ref.low, abs=1e-9) and hi == pytest.approx(ref.high, abs=1e-9)
    assert 0 <= lo <= k / n <= hi <= 1


def test_wilson_interval_exact_values():
    lo, hi = wilson_interval(8, 42)
    assert (round(lo, 4), round(hi, 4)) == (0.0998, 0.333)
    lo, hi = wilson_interval(0, 300)  # about the rule of three, 3/300
    assert lo == 0.0 and hi == pytest.approx(0.012643, abs=1e-6)
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


def test_wording():
    assert pct(0.065426, 3) == "6.54%" and pct(0.0009999, 3) == "0.100%" and pct(0.7) == "70%" and pct(None) == "-"
    assert pct(1.0, 3) == "100%" and pct(0) == "0%"
    assert one_in(0.001) == "1 in 1,000" and one_in(0.25) == "1 in 4.0" and one_in(0) == "none"
    assert num(99.99) == "100" and num(7.0) == "7" and num(2.5) == "2.5" and num(100_000) == "100,000"


def test_explain_observed():
    t = explain_observed(10_000, 2, 3, other_false_alerts=1)
    assert "2 alert(s) were adjudicated true and 3 false (and 1 false against volunteers' images)" in t
    assert "0.0400% (1 in 2,500 faces seen)" in t  # (3 + 1) / 10,000
    assert "40.0% (2 of 5)" in t
    assert "Both figures are needed" in t
    assert "no false alert rate" in explain_observed(0, 0, 0)
    assert "no alert precision" in explain_observed(100, 0, 0)


def test_explain_rates_command():
    r = CliRunner().invoke(app, ["explain-rates", "--faces", "100000", "--watchlisted-passers", "10", "--tpir", "0.7",
                                 "--fpir", "0.001", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["expected_true_alerts"] == pytest.approx(7.0)
    assert d["expected_false_alerts"] == pytest.approx(99.99)
    assert d["alert_precision"] == pytest.approx(0.0654267, abs=1e-6)
    assert d["false_alert_rate"] == pytest.approx(0.0009999)
    assert "6.54%" in d["explanation"]
    r = CliRunner().invoke(app, ["explain-rates", "--faces", "100000", "--watchlisted-passers", "10", "--tpir", "0.7",
                                 "--fpir", "0.001"])
    assert r.exit_code == 0 and "about 7 true alerts" in r.stdout and "6.54%" in r.stdout
    r = CliRunner().invoke(app, ["explain-rates", "--faces", "10", "--watchlisted-passers", "20", "--tpir", "0.7",
                                 "--fpir", "0.001"])
    assert r.exit_code == 2 and "more watchlisted passers than faces" in r.stderr
