"""Transparency: volunteer subjects (test deployments), volunteer passes, a deployment's threshold
evidence (calibration), and the composition of a snapshot kept after its templates are deleted.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


# Plain ADD/DROP COLUMN (SQLite >= 3.35 has both), never a batch "move and copy": on SQLite with
# foreign keys on, dropping the old copy of a referenced table would cascade-delete its children.


def upgrade() -> None:
    op.add_column('subjects', sa.Column('volunteer', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('deployments', sa.Column('threshold_evidence', sa.Text(), nullable=True))
    op.add_column('snapshots', sa.Column('composition', sa.Text(), nullable=True))
    op.create_table('volunteer_passes',
    sa.Column('deployment_id', sa.Integer(), nullable=False),
    sa.Column('subject_id', sa.Integer(), nullable=False),
    sa.Column('passes', sa.Integer(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.Column('recorded_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], name=op.f('fk_volunteer_passes_deployment_id_deployments')),
    sa.ForeignKeyConstraint(['recorded_by_id'], ['users.id'], name=op.f('fk_volunteer_passes_recorded_by_id_users')),
    sa.ForeignKeyConstraint(['subject_id'], ['subjects.id'], name=op.f('fk_volunteer_passes_subject_id_subjects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('deployment_id', 'subject_id', name=op.f('pk_volunteer_passes'))
    )


def downgrade() -> None:
    op.drop_table('volunteer_passes')
    op.drop_column('snapshots', 'composition')
    op.drop_column('deployments', 'threshold_evidence')
    op.drop_column('subjects', 'volunteer')
