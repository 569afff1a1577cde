"""Low-quality references: a reference enrolled below the quality gate by a deliberate, audited
override keeps its quality band, and the snapshot copies it, so the subject's matches are held to
the stricter of the probe's band and the reference's.

Revision ID: 0006
Revises: 0003
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('templates', sa.Column('low_quality_band', sa.String(length=8), nullable=True))
    op.add_column('snapshot_templates', sa.Column('low_quality_band', sa.String(length=8), nullable=True))


def downgrade() -> None:
    op.drop_column('snapshot_templates', 'low_quality_band')
    op.drop_column('templates', 'low_quality_band')
