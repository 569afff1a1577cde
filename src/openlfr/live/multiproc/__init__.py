"""Many cameras on one machine: camera processes around one inference service.

The threaded live run (``live/runner.py``) keeps every camera in one interpreter: past a few
cameras the GIL, not the cores or the GPU, sets the pace (bench/RESULTS.md: 47 frames/s in all
from 16 to 48 cameras on an H200). Here each camera process (one camera or a group) runs the
same ``LiveRunner`` (decode, detection schedule, tracking, best shots, alignment, watchlist
search, alert decision) under its own GIL, and one inference service in the parent process
runs the networks for all of them, batched across cameras. Frames and chips travel through
shared-memory slot rings; only small control messages go through queues.

- ``shape.choose_shape``: threads or processes from the hardware (``RunConfig.shape``);
- ``shm.SlotRing``: fixed-size slots in one ``multiprocessing.shared_memory`` segment;
- ``service.InferenceService``: the networks, batched, behind a request queue;
- ``client``: the camera side of the service (a detector and a descriptor that call it);
- ``camera_process``: the child process's entry point;
- ``runner.ProcessRunner``: the parent: same events, alerts and summary as ``LiveRunner``.
"""

from .shape import choose_shape, make_runner

__all__ = ["choose_shape", "make_runner"]
