"""Images from users are bounded: sizes are checked from the header before decoding (a 12 KB
100000x1000 PNG is refused at once with a clear error, its 100 MP never allocated), the pixels of
one request are limited, the rejection path decodes nothing twice, and 16-bit grey PNGs decode to
the right 8-bit values (not saturated). ``openlfr faces`` and the enroller are run for real.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from openlfr.engine import images
from openlfr.engine.images import ImageError, PixelBudget, RequestTooLarge, decode_image, load_image, probe, reencode

REPO = Path(__file__).resolve().parents[1]


def png_of_zeros(width: int, height: int) -> bytes:
    """A valid 1-bit grey PNG of ``width`` x ``height`` black pixels, written without allocating them."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (width + 7) // 8)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("bomb") / "bomb.png"
    p.write_bytes(png_of_zeros(100_000, 1_000))
    return p


def test_the_bomb_is_small_and_valid(bomb):
    assert bomb.stat().st_size < 20_000
    with Image.open(bomb) as im:
        assert im.size == (100_000, 1_000)


def test_a_bomb_is_refused_from_its_header(bomb):
    too_large = r"image too large \(100000x1000 = 100,000,000 pixels, limit 50,000,000\)"
    with pytest.raises(ImageError, match=r"bomb.png: " + too_large):
        load_image(bomb)
    with pytest.raises(ImageError, match=too_large):
        decode_image(bomb.read_bytes(), "upload.png")
    with pytest.raises(ImageError, match=too_large):
        probe(bomb.read_bytes(), "upload.png")
    with pytest.raises(ImageError, match=r"thin.png: image too elongated \(15000x1000, aspect ratio 15:1, limit 10:1\)"):
        decode_image(png_of_zeros(15_000, 1_000), "thin.png")  # 15 MP: under the pixel limit
    with pytest.raises(ImageError, match=r"image too large \(30000x1000, limit 20,000 pixels a side\)"):
        decode_image(png_of_zeros(30_000, 1_000), "wide.png")
    square = png_of_zeros(8000, 8000)  # 64 MP, square
    with pytest.raises(ImageError, match=r"image too large \(8000x8000 = 64,000,000 pixels, limit 50,000,000\)"):
        decode_image(square, "big.png")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc to read the peak memory")
def test_refusing_a_bomb_does_not_allocate_it(bomb):
    """In a fresh process: refusing the 100 MP bomb peaks far below its 300 MB of RGB pixels."""
    # VmHWM: this process's own peak (ru_maxrss would include the forking pytest's, kept across exec).
    code = ("from openlfr.engine.images import load_image, ImageError\n"
            f"try:\n    load_image({str(bomb)!r})\nexcept ImageError as e:\n    print('refused:', e)\n"
            "print(next(ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM:')))")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    refused, peak_kb = r.stdout.strip().splitlines()
    assert "refused:" in refused and "image too large" in refused
    assert int(peak_kb) < 250_000, f"peak {int(peak_kb) // 1024} MiB"


def test_faces_command_refuses_a_bomb_with_a_clear_error(bomb, tmp_path, astronaut):
    import cv2

    ok = tmp_path / "face.jpg"
    cv2.imwrite(str(ok), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    r = subprocess.run([sys.executable, "-c", "from openlfr.cli import main; main()", "faces", str(bomb), str(ok), "--json"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 2, r.stderr
    assert f"error: {bomb}: image too large (100000x1000 = 100,000,000 pixels, limit 50,000,000)" in r.stderr
    assert '"descriptor"' in r.stdout  # the good image after it was still analysed


def test_pixels_per_request():
    b = PixelBudget(limit=1000)
    b.take(20, 20, "a")
    b.take(20, 20, "b")
    with pytest.raises(RequestTooLarge, match=r"c: the images of this request exceed 1,000 pixels in all \(800 before this 20x20 image\)"):
        b.take(20, 20, "c")


def test_only_still_image_formats_are_opened():
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(ImageError, match="not an image"):
        decode_image(eps, "x.eps")


def test_sixteen_bit_grey_png_is_scaled_not_saturated():
    ramp = np.linspace(0, 65535, 256 * 16, dtype=np.uint16).reshape(16, 256)
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, "PNG")
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        assert im.mode.startswith("I")  # a real 16-bit grey PNG
    rgb = decode_image(buf.getvalue(), "grey16.png")
    assert rgb.shape == (16, 256, 3) and rgb.dtype == np.uint8
    expected = np.round(ramp / 257.0).astype(np.uint8)
    assert np.abs(rgb[:, :, 0].astype(int) - expected).max() <= 1
    assert (rgb[:, :, 0] == rgb[:, :, 2]).all()
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255 and 120 <= rgb[8, 128, 0] <= 135


def test_reencode_keeps_the_pixels_and_drops_everything_else(astronaut):
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, "JPEG", quality=95, comment=b"<script>alert(1)</script>")
    data = buf.getvalue() + b"<html><script>alert(2)</script></html>"
    assert b"<script>" in data
    clean, mt = reencode(data, "poly.html")
    assert mt == "image/jpeg" and clean.startswith(b"\xff\xd8") and b"<script" not in clean
    assert np.abs(decode_image(clean).astype(int) - decode_image(data).astype(int)).mean() < 2
    png = io.BytesIO()
    Image.fromarray(astronaut).save(png, "PNG")
    clean, mt = reencode(png.getvalue())
    assert mt == "image/png" and (decode_image(clean) == astronaut).all()
    with pytest.raises(ImageError, match="not an image"):
        reencode(b"<html><script>alert(3)</script></html>", "x.html")


def test_the_enroller_refuses_a_bomb_and_decodes_each_upload_once(bomb, astronaut, monkeypatch):
    """The real face engine: a bomb and a face-less image are rejected, each read once, the bomb never decoded."""
    from openlfr.engine.pipeline import FaceEngine

    engine = FaceEngine()
    from openlfr.web.enrol import EnrolmentRejected, FaceEnroller, Upload
    from openlfr.watchlist import enrol as wl_enrol

    calls = []
    real = wl_enrol.load_image
    monkeypatch.setattr(wl_enrol, "load_image", lambda p, *a, **k: (calls.append(p), real(p, *a, **k))[1])
    decoded = []
    real_to_rgb = images._to_rgb
    monkeypatch.setattr(images, "_to_rgb", lambda im: (decoded.append(im.size), real_to_rgb(im))[1])
    blank = io.BytesIO()
    Image.fromarray(np.full((120, 120, 3), 127, np.uint8)).save(blank, "PNG")
    enroller = FaceEnroller(engine=engine)
    with pytest.raises(EnrolmentRejected) as e:
        enroller("R1", "Nobody", "wanted_by_courts", [Upload("bomb.png", bomb.read_bytes()), Upload("blank.png", blank.getvalue())])
    reasons = {r["path"]: r["reason"] for r in e.value.report["rejected"]}
    assert reasons == {"bomb.png": "image too large (100000x1000 = 100,000,000 pixels, limit 50,000,000)", "blank.png": "no face found"}
    assert len(calls) == 1 and decoded == [(120, 120)]
    face = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(astronaut[0:300, 100:350])).save(face, "JPEG")
    calls.clear()
    result = enroller("R1", "Eileen Collins", "wanted_by_courts", [Upload("face.html", face.getvalue()), Upload("bomb.png", bomb.read_bytes())])
    assert [im.media_type for im in result.images] == ["image/jpeg"]  # the type found by decoding, not the name's
    assert [r["path"] for r in result.report["rejected"]] == ["bomb.png"] and len(calls) == 1
    big = png_of_zeros(7000, 7000)  # 49 MP each: three are more than a request may bring
    with pytest.raises(RequestTooLarge, match="exceed 100,000,000 pixels in all"):
        enroller("R2", "Too Many", "wanted_by_courts", [Upload(f"{i}.png", big) for i in range(3)])
