"""Video decoders (live/decode.py): without a GPU the GPU backends are skipped with the reason,
and the CPU fallbacks give the frames OpenCV's capture gives."""

from __future__ import annotations

import numpy as np
import pytest

from openlfr.live.decode import DecodeError, OpenCVDecoder, open_decoder


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A small real video: the astronaut photo moving, 12 frames at 10 fps (mp4v)."""
    import cv2
    from skimage import data

    img = cv2.resize(np.ascontiguousarray(data.astronaut()), (160, 120))
    path = tmp_path_factory.mktemp("decode") / "clip.mp4"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (160, 120))
    for i in range(12):
        out.write(np.ascontiguousarray(np.roll(img, 3 * i, axis=1)[:, :, ::-1]))
    out.release()
    return path


def test_cpu_device_falls_back_to_a_cpu_decoder(clip):
    with open_decoder(clip, device="cpu") as dec:
        assert dec.backend in ("pyav", "opencv") and not dec.on_device
        assert dict(dec.tried)["torchcodec"] == "no CUDA device"
        frames = list(dec)
    assert len(frames) == 12 and dec.fps == pytest.approx(10.0)
    assert frames[0][0].shape == (120, 160, 3) and frames[0][0].dtype == np.uint8
    assert [t for _, t in frames[:3]] == pytest.approx([0.0, 0.1, 0.2])


def test_auto_without_gpu_gives_the_opencv_frames(clip):
    from openlfr.engine.runtime import cuda_available

    if cuda_available():
        pytest.skip("this test is about machines without a GPU")
    dec = open_decoder(clip)  # auto: a GPU backend only with a CUDA device
    assert not dec.on_device
    ref = OpenCVDecoder(str(clip))
    for (a, _), (b, _) in zip(dec, ref):
        # same FFmpeg underneath: identical, or within a colour-conversion rounding for PyAV
        assert np.abs(a.astype(int) - b.astype(int)).max() <= (0 if dec.backend == "opencv" else 3)
    dec.close()
    ref.close()


def test_missing_backend_is_skipped_with_the_reason(clip):
    dec = open_decoder(clip, device="cpu", prefer=("pyav", "opencv"))
    if dec.backend == "opencv":  # PyAV not installed here
        assert dict(dec.tried)["pyav"].startswith("not installed")
    dec.close()


def test_bad_input_is_refused_clearly(tmp_path):
    with pytest.raises(DecodeError, match="no such file"):
        open_decoder(tmp_path / "absent.mp4", device="cpu")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(DecodeError, match="no decoder could open it"):
        open_decoder(bad, device="cpu", prefer=("opencv",))
    with pytest.raises(ValueError, match="unknown decoder"):
        open_decoder(bad, device="cpu", prefer=("vlc",))
