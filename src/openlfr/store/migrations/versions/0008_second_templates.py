"""The second model's templates: each reference template and its frozen copy in a deployment's
snapshot keep the second face model's (SFace's, ``engine/sface.py``) feature of the same face
beside dlib's, for the fused score. NULL where the reference has none (no second model
installed, a face without RetinaFace's landmarks, a template enrolled before 0008).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('templates', sa.Column('second_vector', sa.LargeBinary(), nullable=True))
    op.add_column('snapshot_templates', sa.Column('second_vector', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    op.drop_column('snapshot_templates', 'second_vector')
    op.drop_column('templates', 'second_vector')
