"""Decoder for dlib's binary serialization format (see docs/dlib-format.md).

Integers: a control byte (low 4 bits = byte count, 0x80 = negative) then little-endian bytes.
Floats: mantissa (int64) then exponent (int16), value = mantissa * 2**exponent.
Tensors hold raw little-endian float32 data.
"""

from __future__ import annotations

import math

import numpy as np


class DlibFormatError(ValueError):
    """The bytes do not follow dlib's serialization format."""


class Reader:
    """A cursor over the bytes of a dlib file."""

    def __init__(self, data: bytes, name: str = "<bytes>"):
        self.data = memoryview(data)
        self.pos = 0
        self.name = name

    def _fail(self, what: str) -> DlibFormatError:
        return DlibFormatError(f"{self.name}: {what} at byte {self.pos}")

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def int(self) -> int:
        if self.pos >= len(self.data):
            raise self._fail("unexpected end of file")
        ctrl = self.data[self.pos]
        n = ctrl & 0x0F
        if ctrl & 0x70 or n > 8:
            raise self._fail(f"bad integer control byte 0x{ctrl:02x}")
        start = self.pos + 1
        end = start + n
        if end > len(self.data):
            raise self._fail("unexpected end of file")
        value = int.from_bytes(self.data[start:end], "little")
        self.pos = end
        return -value if ctrl & 0x80 else value

    def float(self) -> float:
        mantissa = self.int()
        exponent = self.int()
        if exponent == 32000:
            return math.inf
        if exponent == 32001:
            return -math.inf
        if exponent == 32002:
            return math.nan
        return math.ldexp(mantissa, exponent)

    def floats(self, count: int, dtype=np.float64) -> np.ndarray:
        return np.array([self.float() for _ in range(count)], dtype=dtype)

    def bool(self) -> bool:
        if self.pos >= len(self.data):
            raise self._fail("unexpected end of file")
        b = self.data[self.pos]
        self.pos += 1
        if b not in (0x30, 0x31):
            raise self._fail(f"bad bool byte 0x{b:02x}")
        return b == 0x31

    def string(self) -> str:
        n = self.int()
        raw = bytes(self.data[self.pos : self.pos + n])
        if len(raw) != n:
            raise self._fail("unexpected end of file in string")
        self.pos += n
        return raw.decode("latin-1")

    def expect_string(self, expected: str) -> None:
        start = self.pos
        got = self.string()
        if got != expected:
            self.pos = start
            raise self._fail(f"expected {expected!r}, found {got!r}")

    def raw_float32(self, count: int) -> np.ndarray:
        nbytes = 4 * count
        if self.pos + nbytes > len(self.data):
            raise self._fail("unexpected end of file in tensor data")
        arr = np.frombuffer(self.data[self.pos : self.pos + nbytes], dtype="<f4").astype(np.float32)
        self.pos += nbytes
        return arr

    def matrix(self, dtype=np.float64) -> np.ndarray:
        """A dlib::matrix of floats (negative rows/cols = new format)."""
        nr, nc = self.int(), self.int()
        if nr < 0 or nc < 0:
            nr, nc = -nr, -nc
        return self.floats(nr * nc, dtype).reshape(nr, nc)

    def tensor(self) -> np.ndarray:
        """A resizable_tensor: version 2, n, k, nr, nc, then raw float32, shaped (n, k, nr, nc)."""
        version = self.int()
        if version != 2:
            raise self._fail(f"unsupported tensor version {version}")
        n, k, nr, nc = (self.int() for _ in range(4))
        return self.raw_float32(n * k * nr * nc).reshape(n, k, nr, nc)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        version = self.int()
        if version != 1:
            raise self._fail(f"unsupported alias_tensor version {version}")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]
