"""`openlfr faces` and `openlfr compare` on real photos and on bad input."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from openlfr.cli import app
from openlfr.engine.samples import grace_hopper_path


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


@pytest.fixture(scope="module")
def astro_path(tmp_path_factory, astronaut):
    p = tmp_path_factory.mktemp("img") / "astronaut.png"
    Image.fromarray(astronaut).save(p)
    return p


def _lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_faces_json(runner, astro_path):
    res = runner.invoke(app, ["faces", str(astro_path), "--json"])
    assert res.exit_code == 0, res.output
    faces = _lines(res.stdout)
    assert len(faces) >= 1
    f = max(faces, key=lambda f: f["score"])
    assert set(f) == {"image", "box", "score", "landmarks", "quality", "descriptor"}
    left, top, right, bottom = f["box"]
    assert 150 < left < right < 330 and 20 < top < bottom < 220  # Eileen Collins' face
    assert len(f["landmarks"]) == 5 and len(f["descriptor"]) == 128
    assert 0 < f["quality"] <= 1


def test_faces_cnn_detector(runner, astro_path):
    res = runner.invoke(app, ["faces", str(astro_path), "--json", "--detector", "cnn", "--upsample", "0"])
    assert res.exit_code == 0, res.output
    assert len(_lines(res.stdout)) == 1


def _huge_png(path, width=40000, height=40000):
    """A tiny, valid PNG file whose header declares an enormous image."""
    Image.new("L", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))


def test_faces_bad_input_keeps_going(runner, tmp_path, astro_path):
    good = tmp_path / "good.jpg"
    Image.open(astro_path).save(good, quality=95)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image\n")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    huge = tmp_path / "huge.png"
    _huge_png(huge)
    noface = tmp_path / "noface.png"
    Image.fromarray(np.full((200, 300, 3), 128, np.uint8)).save(noface)
    missing = tmp_path / "missing.jpg"
    args = ["faces", str(corrupt), str(text), str(empty), str(missing), str(huge), str(noface), str(good), "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    faces = _lines(res.stdout)
    assert faces and {f["image"] for f in faces} == {str(good)}  # the good image after the bad ones
    err = res.stderr
    assert f"{corrupt}: corrupt or truncated" in err
    assert f"{text}: not an image" in err
    assert f"{empty}: empty file" in err
    assert f"{missing}: no such file" in err
    assert f"{huge}: image too large" in err
    assert f"{noface}: no face found" in err
    assert "Traceback" not in res.output


def test_compare(runner, astro_path):
    res = runner.invoke(app, ["compare", str(astro_path), str(astro_path), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["distance"] < 1e-5 and out["same"] is True
    res = runner.invoke(app, ["compare", str(astro_path), str(grace_hopper_path()), "--json"])
    out = json.loads(res.stdout)
    assert out["distance"] > 0.6 and out["same"] is False


def test_compare_without_face(runner, tmp_path, astro_path):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(blank)
    res = runner.invoke(app, ["compare", str(astro_path), str(blank)])
    assert res.exit_code == 2
    assert "no face found" in res.stderr
