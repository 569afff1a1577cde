"""``openlfr run`` and ``openlfr demo`` on the command line: JSON lines, and bad input (missing
file, unreadable stream URL, empty watchlist, watchlist image without a face, bad options)."""

from __future__ import annotations

import json
import socket

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from openlfr.cli import app
from openlfr.live.demo import SUBJECT_ID, build_demo

runner = CliRunner()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("demo"))


def lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_run_json_lines(demo):
    res = runner.invoke(app, ["run", "--source", str(demo.video), "--watchlist", str(demo.watchlist), "--json"])
    assert res.exit_code == 0, res.output
    evs = lines(res.stdout)
    assert evs[0]["event"] == "start" and "threshold_reason" in evs[0]
    alerts = [e for e in evs if e["event"] == "alert"]
    assert len(alerts) == 1 and alerts[0]["subject"] == SUBJECT_ID
    for key in ("camera", "track", "subject", "distance", "frame", "time"):
        assert key in alerts[0]
    s = evs[-1]
    assert s["event"] == "summary"
    for key in ("frames", "faces_seen", "alerts", "dropped_frames", "fps"):
        assert key in s
    assert s["alerts"] == 1 and s["frames"] == 100


def test_run_threshold_option_and_display(demo):
    res = runner.invoke(app, ["run", "-s", str(demo.video), "--watchlist", str(demo.watchlist), "--threshold", "0.05"])
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "0.050" in out and "given by the operator" in out  # which threshold, and why
    assert "ALERT" not in out and "faces seen" in out and "summary" in out


def test_demo_command():
    res = runner.invoke(app, ["demo", "--json"])
    assert res.exit_code == 0, res.output
    evs = lines(res.stdout)
    assert [e["subject"] for e in evs if e["event"] == "alert"] == [SUBJECT_ID]
    assert evs[-1]["event"] == "summary" and evs[-1]["faces_seen"] == 2


def test_missing_file(demo, tmp_path):
    res = runner.invoke(app, ["run", "--source", str(tmp_path / "missing.mp4"), "--watchlist", str(demo.watchlist)])
    assert res.exit_code == 2
    assert "no such file" in res.output and "Traceback" not in res.output


def test_unreadable_stream_url(demo):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here
    res = runner.invoke(app, ["run", "--source", f"http://127.0.0.1:{port}/cam.mjpg", "--watchlist", str(demo.watchlist)])
    assert res.exit_code == 2
    assert "cannot connect" in res.output
    res = runner.invoke(app, ["run", "--source", "gopher://example/x", "--watchlist", str(demo.watchlist)])
    assert res.exit_code == 2 and "unsupported URL scheme" in res.output


def test_empty_watchlist(demo, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = runner.invoke(app, ["run", "--source", str(demo.video), "--watchlist", str(empty)])
    assert res.exit_code == 2 and "watchlist" in res.output
    csv = tmp_path / "empty.csv"
    csv.write_text("subject_id,name,image\n")
    res = runner.invoke(app, ["run", "--source", str(demo.video), "--watchlist", str(csv)])
    assert res.exit_code == 2 and "watchlist" in res.output
    res = runner.invoke(app, ["run", "--source", str(demo.video), "--watchlist", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "no such file or folder" in res.output


def test_watchlist_image_without_a_face(demo, tmp_path):
    wl = tmp_path / "wl"
    wl.mkdir()
    cv2.imwrite(str(wl / "nobody.png"), np.full((240, 240, 3), 128, np.uint8))
    res = runner.invoke(app, ["run", "--source", str(demo.video), "--watchlist", str(wl)])
    assert res.exit_code == 2
    assert "no subject has an accepted image" in res.output
    # with a usable subject beside it: the run goes on, and the rejected image is reported
    for p in demo.watchlist.iterdir():
        (wl / p.name).write_bytes(p.read_bytes())
    res = runner.invoke(app, ["run", "--source", str(demo.video), "--watchlist", str(wl), "--json"])
    assert res.exit_code == 0, res.output
    assert "nobody.png" in res.stderr
    assert lines(res.stdout)[0]["watchlist_subjects"] == 1


def test_bad_options(demo):
    res = runner.invoke(app, ["run", "--source", str(demo.video), "--watchlist", str(demo.watchlist), "--zone", "0,1"])
    assert res.exit_code == 2
    res = runner.invoke(app, ["run", "--source", str(demo.video), "--watchlist", str(demo.watchlist),
                              "--threshold", "-1"])
    assert res.exit_code == 2 and "threshold" in res.output
    res = runner.invoke(app, ["run", "--watchlist", str(demo.watchlist)])
    assert res.exit_code == 2  # --source is required
