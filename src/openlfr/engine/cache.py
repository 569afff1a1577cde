"""On-disk cache of parsed model files, keyed by the source file's sha256.

Parsing dlib's files is slow (the shape predictor holds ~1.2M encoded floats); the arrays are
written once to ``$OPENLFR_CACHE_DIR`` (default ``~/.cache/openlfr``) as ``.npz`` plus a JSON
description, and read back on later runs. A damaged cache entry is rebuilt.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

FORMAT_VERSION = 1


def cache_dir() -> Path:
    root = os.environ.get("OPENLFR_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "openlfr"
    )
    return Path(root)


def _flatten(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = obj
        return {"__array__": key}
    if isinstance(obj, dict):
        return {k: _flatten(v, arrays) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, arrays) for v in obj]
    return obj


def _restore(obj: Any, arrays: Any) -> Any:
    if isinstance(obj, dict):
        if "__array__" in obj:
            return arrays[obj["__array__"]]
        return {k: _restore(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_restore(v, arrays) for v in obj]
    return obj


def cached(kind: str, sha256: str, build: Callable[[], Any]) -> Any:
    """Return ``build()``'s result (nested dicts/lists of arrays and JSON values), cached on disk."""
    path = cache_dir() / f"{kind}-{sha256[:32]}-v{FORMAT_VERSION}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["__meta__"]))
                arrays = {k: z[k] for k in z.files if k != "__meta__"}
            return _restore(meta, arrays)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError):
            path.unlink(missing_ok=True)
    value = build()
    arrays: dict[str, np.ndarray] = {}
    meta = _flatten(value, arrays)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, __meta__=np.array(json.dumps(meta)), **arrays)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home still works, just without the cache
    return _restore(meta, arrays) if arrays else value
