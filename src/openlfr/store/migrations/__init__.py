"""Alembic migrations, shipped inside the package and run programmatically (see ``store.db``)."""
