"""`openlfr evaluate detection`: matching, precision/recall/AP by size band on hand-made boxes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from openlfr.engine.detection import Detection
from openlfr.evaluate.detection import (
    BoxesError,
    Marked,
    average_precision,
    evaluate_detection,
    match,
    read_boxes,
    summarise,
)

XML = """<?xml version='1.0'?>
<dataset><images>
  <image file='a.png'>
    <box top='10' left='10' width='20' height='20'/>
    <box top='10' left='100' width='50' height='50'/>
    <box top='100' left='10' width='40' height='40' ignore='1'/>
  </image>
  <image file='b.png'>
    <box top='0' left='0' width='100' height='100'><label>profile</label></box>
  </image>
  <image file='c.png'/>
</images></dataset>
"""


def D(l, t, w, s):
    return Detection((l, t, l + w - 1, t + w - 1), s)


def test_read_boxes_keeps_ignore_labels_and_empty_images(tmp_path):
    p = tmp_path / "b.xml"
    p.write_text(XML)
    truth = read_boxes(p)
    assert list(truth) == ["a.png", "b.png", "c.png"] and truth["c.png"] == []
    assert truth["a.png"][0] == Marked((10, 10, 29, 29), False, "")
    assert truth["a.png"][2].ignore and truth["b.png"][0].label == "profile"
    (tmp_path / "bad.xml").write_text("<dataset><images><image file='x'><box top='1'/></image></images></dataset>")
    with pytest.raises(BoxesError, match="top/left/width/height"):
        read_boxes(tmp_path / "bad.xml")
    with pytest.raises(BoxesError, match="cannot read"):
        read_boxes(tmp_path / "none.xml")


def test_matching_ignore_duplicates_and_bands():
    marked = [Marked((10, 10, 29, 29)), Marked((100, 10, 149, 59)), Marked((10, 100, 49, 139), ignore=True)]
    dets = [D(11, 11, 20, 0.9),  # right (the 20 px face)
            D(12, 12, 20, 0.8),  # duplicate of it: wrong
            D(10, 100, 40, 0.7),  # on the ignored face: not counted
            D(300, 300, 40, 0.6)]  # nothing there: wrong
    out, n = match(dets, marked)
    assert n == 2 and out == [(0.9, 1), (0.8, 0), (0.6, 0)]
    out, n = match(dets, marked, 32, 64)  # the 50 px face only; detections under 32 px not counted
    assert n == 1 and out == [(0.6, 0)]
    out, n = match(dets, marked, 0, 32)
    assert n == 1 and out == [(0.9, 1), (0.8, 0)]


def test_average_precision_by_hand():
    assert average_precision([(0.9, 1), (0.8, 0), (0.7, 1)], 2) == pytest.approx(0.5 * 1 + 0.5 * (2 / 3))
    assert average_precision([(0.9, 1), (0.8, 1)], 4) == pytest.approx(0.5)
    assert average_precision([], 3) == 0.0 and np.isnan(average_precision([(0.5, 0)], 0))


def test_summarise_and_the_command_on_images(tmp_path):
    import cv2

    for n in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(tmp_path / n), np.zeros((200, 200, 3), np.uint8))
    (tmp_path / "boxes.xml").write_text(XML)

    class Fixed:  # the same boxes on every image: wrong on b and c
        def detect(self, rgb):
            return [D(11, 11, 20, 0.9), D(100, 10, 50, 0.5)]

    res = evaluate_detection(tmp_path, tmp_path / "boxes.xml", {"fixed": Fixed()})
    r = res["detectors"]["fixed"]
    assert res["faces"] == 3 and res["ignored"] == 1 and res["megapixels"] == 0.12
    assert (r["found"], r["false"], r["recall"], r["precision"]) == (2, 4, round(2 / 3, 4), round(2 / 6, 4))
    assert r["by_size"]["<32"]["faces"] == 1 and r["by_size"]["<32"]["recall"] == 1.0
    assert r["by_size"][">128"]["faces"] == 0 and r["by_size"][">128"]["ap"] is None
    assert r["by_size"]["64-128"] == {"faces": 1, "found": 0, "false": 0, "recall": 0.0, "precision": None, "ap": 0.0}
    assert summarise([([], [Marked((0, 0, 99, 99))])], 64, 128) == r["by_size"]["64-128"]

    from openlfr.cli import app

    out = CliRunner().invoke(app, ["evaluate", "detection", "--images", str(tmp_path), "--boxes",
                                   str(tmp_path / "boxes.xml"), "--detector", "retina", "--json"])
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)["detectors"]["retina"]
    assert got["faces"] == 3 and got["found"] == 0 and got["false"] == 0  # black images: no face, none invented
    bad = CliRunner().invoke(app, ["evaluate", "detection", "--images", str(tmp_path), "--boxes",
                                   str(tmp_path / "boxes.xml"), "--detector", "nope"])
    assert bad.exit_code == 2 and "unknown detector" in bad.output
