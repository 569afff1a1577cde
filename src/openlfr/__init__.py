"""openlfr: open, accountable live facial recognition."""

import os as _os

# No telemetry: onnxruntime otherwise writes a device id under ~/.cache/Microsoft, a session file
# in the temp folder, and would upload a process event. The switch must be set before onnxruntime
# loads, and every import of it goes through this package first. An operator who set it keeps theirs.
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
