"""Fixed-size slots in one shared-memory segment: how frames and chips cross processes.

A camera process writes an image into a free slot and sends only ``(slot, shape, dtype)``
through a queue; the service reads the slot in place (a numpy view, no copy, no pickling) and
answers; the slot is then free again. The parent creates (and at the end unlinks) every
segment, so a camera process that dies cannot leak one.
"""

from __future__ import annotations

import queue
from multiprocessing import shared_memory

import numpy as np


class SlotRing:
    """``slots`` slots of ``slot_bytes`` bytes each in one segment.

    ``SlotRing.create(...)`` in the owning (parent) process, ``SlotRing.attach(name, ...)`` in a
    child; ``acquire`` / ``release`` hand out free slots within one process (thread-safe).
    """

    def __init__(self, shm: shared_memory.SharedMemory, slots: int, slot_bytes: int, owner: bool):
        self.shm = shm
        self.slots = int(slots)
        self.slot_bytes = int(slot_bytes)
        self.owner = owner
        self._free: queue.Queue = queue.Queue()
        for i in range(self.slots):
            self._free.put(i)

    @classmethod
    def create(cls, slots: int, slot_bytes: int) -> "SlotRing":
        if slots < 1 or slot_bytes < 1:
            raise ValueError("a ring needs at least one slot of at least one byte")
        shm = shared_memory.SharedMemory(create=True, size=int(slots) * int(slot_bytes))
        return cls(shm, slots, slot_bytes, owner=True)

    @classmethod
    def attach(cls, name: str, slots: int, slot_bytes: int) -> "SlotRing":
        # The parent owns the segment. Python >= 3.13: track=False keeps this process's resource
        # tracker out of it. Before: camera processes are spawned, so they share the parent's
        # tracker, where a second registration of the same name changes nothing (and
        # unregistering here would undo the parent's).
        try:
            shm = shared_memory.SharedMemory(name=name, track=False)
        except TypeError:  # Python < 3.13
            shm = shared_memory.SharedMemory(name=name)
        return cls(shm, slots, slot_bytes, owner=False)

    @property
    def name(self) -> str:
        return self.shm.name

    def spec(self) -> tuple[str, int, int]:
        return self.shm.name, self.slots, self.slot_bytes

    def fits(self, nbytes: int) -> bool:
        return nbytes <= self.slot_bytes

    def acquire(self, timeout: float | None = None) -> int:
        return self._free.get(timeout=timeout)

    def release(self, slot: int) -> None:
        self._free.put(slot)

    def view(self, slot: int, shape, dtype) -> np.ndarray:
        """The array stored in ``slot`` (a view into shared memory: copy it to keep it)."""
        dtype = np.dtype(dtype)
        n = int(np.prod(shape)) * dtype.itemsize
        if not 0 <= slot < self.slots:
            raise ValueError(f"no slot {slot} (ring of {self.slots})")
        if n > self.slot_bytes:
            raise ValueError(f"{n} bytes do not fit a slot of {self.slot_bytes}")
        return np.ndarray(tuple(shape), dtype, buffer=self.shm.buf, offset=slot * self.slot_bytes)

    def write(self, slot: int, array: np.ndarray) -> tuple[tuple[int, ...], str]:
        """Copy ``array`` into ``slot``; returns (shape, dtype) for the reader."""
        a = np.asarray(array)
        self.view(slot, a.shape, a.dtype)[...] = a
        return tuple(a.shape), a.dtype.str

    def close(self) -> bool:
        """Unmap (and unlink, for the owner). False when views are still alive (retry later)."""
        if self.owner:
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass
        try:
            self.shm.close()
        except BufferError:  # a view is still exported (a request in flight): unmapped later
            return False
        return True


def pack(images) -> tuple[np.ndarray, list[tuple[tuple[int, ...], str]]]:
    """Several arrays as one flat byte array (for one ring slot) and the (shape, dtype) of each."""
    arrays = [np.ascontiguousarray(i) for i in images]
    parts = [(tuple(a.shape), a.dtype.str) for a in arrays]
    flat = np.concatenate([a.reshape(-1).view(np.uint8) for a in arrays]) if arrays else np.empty(0, np.uint8)
    return flat, parts


def unpack(flat: np.ndarray, parts) -> list[np.ndarray]:
    """The arrays ``pack`` put in ``flat`` (views into it, no copy)."""
    flat = flat.reshape(-1).view(np.uint8)
    out, at = [], 0
    for shape, dtype in parts:
        dt = np.dtype(dtype)
        n = int(np.prod(shape)) * dt.itemsize
        if at + n > flat.size:
            raise ValueError("packed images larger than what was sent")
        out.append(flat[at:at + n].view(dt).reshape(shape))
        at += n
    return out
