"""Model files: found without importing face_recognition_models, checked by size and sha256."""

from __future__ import annotations

import shutil

import pytest

from openlfr.engine import models
from openlfr.engine.dlib_serial import DlibFormatError, Reader
from openlfr.engine.models import MODELS, ModelFileError, model_path


def test_all_models_found_and_verified():
    for name in MODELS:
        p = model_path(name)
        assert p.stat().st_size == MODELS[name].size


def test_found_without_importing_package():
    import sys

    models.models_dir()
    assert "face_recognition_models" not in sys.modules


def _copy_models(tmp_path, names):
    src = models.models_dir()
    for n in names:
        shutil.copy(src / n, tmp_path / n)


def test_missing_file_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENLFR_MODELS_DIR", str(tmp_path))
    with pytest.raises(ModelFileError, match="pip install face_recognition_models"):
        model_path(models.MMOD)


def test_truncated_file_is_refused(tmp_path, monkeypatch):
    _copy_models(tmp_path, [models.MMOD])
    data = (tmp_path / models.MMOD).read_bytes()
    (tmp_path / models.MMOD).write_bytes(data[:-100])
    monkeypatch.setenv("OPENLFR_MODELS_DIR", str(tmp_path))
    with pytest.raises(ModelFileError, match="damaged"):
        model_path(models.MMOD)


def test_corrupted_bytes_are_refused(tmp_path, monkeypatch):
    _copy_models(tmp_path, [models.MMOD])
    p = tmp_path / models.MMOD
    data = bytearray(p.read_bytes())
    data[5000] ^= 0xFF
    p.write_bytes(bytes(data))
    monkeypatch.setenv("OPENLFR_MODELS_DIR", str(tmp_path))
    with pytest.raises(ModelFileError, match="sha256"):
        model_path(models.MMOD)


def test_package_not_installed(monkeypatch):
    monkeypatch.delenv("OPENLFR_MODELS_DIR", raising=False)
    monkeypatch.setattr(models, "PACKAGE", "no_such_package_openlfr")
    with pytest.raises(ModelFileError, match="not installed"):
        models.models_dir()


def test_serial_decoding():
    # 0 -> 01 00; -5 -> 81 05; 300 -> 02 2c 01; float 0.5 = 1 * 2^-1 -> (01 01)(81 01)
    r = Reader(bytes([0x01, 0x00, 0x81, 0x05, 0x02, 0x2C, 0x01, 0x01, 0x01, 0x81, 0x01, 0x31]))
    assert r.int() == 0 and r.int() == -5 and r.int() == 300
    assert r.float() == 0.5 and r.bool() is True and r.at_end()
    with pytest.raises(DlibFormatError, match="end of file"):
        r.int()
    with pytest.raises(DlibFormatError, match="control byte"):
        Reader(b"\x7f").int()
