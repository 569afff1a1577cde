"""A camera worker on another machine: ``openlfr run --server URL --token TOKEN --deployment ID``.

``worker.client`` fetches the deployment's frozen watchlist from the server, and hands the run's
alerts and faces-seen counts to the server through the same sink interface a local run writes to
the database with, buffered on disk (idempotently) while the server is away.
"""
