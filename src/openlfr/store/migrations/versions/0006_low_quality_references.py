"""Low-quality references: a reference enrolled below the quality gate by a deliberate, audited
override keeps its quality band, and the snapshot copies it, so the subject's matches are held to
the stricter of the probe's band and the reference's. Faces seen that were too poor to search
(below the lowest quality band) are counted per camera beside the faces seen.

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('templates', sa.Column('low_quality_band', sa.String(length=8), nullable=True))
    op.add_column('snapshot_templates', sa.Column('low_quality_band', sa.String(length=8), nullable=True))
    op.add_column('faces_seen', sa.Column('too_poor', sa.BigInteger(), server_default='0', nullable=False))


def downgrade() -> None:
    op.drop_column('faces_seen', 'too_poor')
    op.drop_column('snapshot_templates', 'low_quality_band')
    op.drop_column('templates', 'low_quality_band')
