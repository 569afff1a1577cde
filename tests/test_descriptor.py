"""The descriptor network on our runtime against dlib's compute_face_descriptor."""

from __future__ import annotations

import numpy as np
import pytest

import dlib  # a required dependency (dlib-bin): never skipped

from openlfr.engine.descriptor import DescriptorModel, build_descriptor_onnx  # noqa: E402
from openlfr.engine.dnn_reader import load_network, read_network  # noqa: E402
from openlfr.engine.models import DESCRIPTOR, MMOD, SHAPE5, model_path  # noqa: E402


@pytest.fixture(scope="module")
def dlib_models():
    return (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(str(model_path(SHAPE5))),
        dlib.face_recognition_model_v1(str(model_path(DESCRIPTOR))),
    )


@pytest.fixture(scope="module")
def model():
    return DescriptorModel(batch_size=8)


def dlib_chips(images, dlib_models):
    det, sp, _ = dlib_models
    chips = []
    for img in images:
        for r in det(img, 1):
            chips.append(np.asarray(dlib.get_face_chip(img, sp(img, r), size=150, padding=0.25)))
    return chips


def test_network_structure():
    net = read_network(model_path(DESCRIPTOR))
    kinds = [layer.kind for layer in net.layers]
    assert kinds.count("con") == 29 and kinds.count("affine") == 29 and kinds.count("add_prev") == 14
    n_params = sum(
        layer.params["weight"].size + layer.params["bias"].size if layer.kind == "con" else 0 for layer in net.layers
    )
    n_params += sum(2 * layer.params["gamma"].size for layer in net.layers if layer.kind == "affine")
    n_params += sum(layer.params["weight"].size for layer in net.layers if layer.kind == "fc")
    assert n_params == 5_614_592
    assert net.loss["dist_thresh"] == pytest.approx(0.6)
    assert net.input["mean"] == pytest.approx((122.782, 117.001, 104.298), abs=1e-3)


def test_cache_gives_same_arrays(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENLFR_CACHE_DIR", str(tmp_path))
    first = load_network(MMOD)
    assert list(tmp_path.glob("dnn-*.npz")), "parsed network was not cached"
    second = load_network(MMOD)
    for a, b in zip(first.layers, second.layers):
        assert a.kind == b.kind
        for k, v in a.params.items():
            if isinstance(v, np.ndarray):
                np.testing.assert_array_equal(v, b.params[k])
            else:
                assert v == b.params[k]


def test_onnx_graph_is_valid():
    import onnx

    onnx.checker.check_model(build_descriptor_onnx(load_network(DESCRIPTOR)))


def _assert_parity(chips, model, dlib_models):
    fr = dlib_models[2]
    ours = model.compute(np.stack(chips))
    ref = np.array([np.asarray(fr.compute_face_descriptor(c)) for c in chips])
    err = np.abs(ours - ref).max()
    assert err <= 1e-4, f"max abs difference {err}"
    return err


def test_parity_astronaut(astronaut, model, dlib_models):
    chips = dlib_chips([astronaut], dlib_models)
    assert len(chips) >= 1
    _assert_parity(chips, model, dlib_models)


def test_parity_lfw(shared_data, model, dlib_models):
    from openlfr.engine.images import load_image

    root = shared_data / "lfw-dev" / "images"
    paths = sorted(root.glob("*/*_0001.jpg"))[::150][:20]
    chips = dlib_chips([load_image(p) for p in paths], dlib_models)
    assert len(chips) >= 15
    _assert_parity(chips, model, dlib_models)


def test_batch_equals_single(astronaut, model, dlib_models):
    chip = dlib_chips([astronaut], dlib_models)[0]
    rng = np.random.default_rng(1)
    noisy = [np.clip(chip.astype(int) + rng.integers(-20, 20, chip.shape), 0, 255).astype(np.uint8) for _ in range(11)]
    batch = model.compute(np.stack(noisy))
    single = np.stack([model.compute(c)[0] for c in noisy])
    np.testing.assert_allclose(batch, single, atol=1e-5)


def test_flip_and_jitter_average(astronaut, model, dlib_models):
    chip = dlib_chips([astronaut], dlib_models)[0]
    plain = model.compute(chip)[0]
    mirrored = model.compute(np.ascontiguousarray(chip[:, ::-1]))[0]
    np.testing.assert_allclose(model.compute(chip, flip=True)[0], (plain + mirrored) / 2, atol=1e-5)
    jit = model.compute(chip, jitter=8, seed=3)[0]
    assert 0 < np.linalg.norm(jit - plain) < 0.15  # same face, slightly moved
    np.testing.assert_array_equal(jit, model.compute(chip, jitter=8, seed=3)[0])  # seeded


def test_bad_chip_shapes(model):
    with pytest.raises(ValueError, match="uint8"):
        model.compute(np.zeros((2, 100, 100, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        model.compute(np.zeros((2, 150, 150, 3), np.float32))
    assert model.compute(np.zeros((0, 150, 150, 3), np.uint8)).shape == (0, 128)
