"""How each alert was decided: the distance threshold of that face (each subject has its own, per
probe quality band, moved by the second model's score when fused), the scoring model's score and
the band's Z threshold it was compared with, the band used and the second model when the score
was fused. NULL for alerts stored before 0009 (and those sent by an older camera worker); the
score columns are NULL too for a deployment with one fixed threshold.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

COLUMNS = (('threshold', sa.Float()), ('score', sa.Float()), ('score_threshold', sa.Float()),
           ('band', sa.String(length=8)), ('second_model', sa.String(length=16)))


def upgrade() -> None:
    for name, type_ in COLUMNS:
        op.add_column('alerts', sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    for name, _ in reversed(COLUMNS):
        op.drop_column('alerts', name)
