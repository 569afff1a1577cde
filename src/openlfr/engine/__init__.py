"""The face engine: detectors, landmarks, chips, descriptors and their runtimes."""

import os

# onnxruntime's telemetry (on Windows builds) stays off: openlfr runs air-gapped and sends nothing.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
