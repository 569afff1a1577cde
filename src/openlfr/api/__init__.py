"""The REST API (FastAPI routers under /api), the live alert stream and the camera workers' endpoints.

``mount.mount_api(app)`` adds them to the application built by ``openlfr.server.create_app``,
beside the console; camera workers post alerts with a worker token (``openlfr.worker.client``).
See docs/console.md.
"""
