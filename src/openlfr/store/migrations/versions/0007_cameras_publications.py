"""Camera health (the latest report of each camera of a deployment) and the deployments an
administrator published on the public transparency pages.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('camera_status',
    sa.Column('deployment_id', sa.Integer(), nullable=False),
    sa.Column('camera', sa.String(length=200), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('worker', sa.String(length=300), nullable=False),
    sa.Column('fps', sa.Float(), nullable=False),
    sa.Column('frames', sa.BigInteger(), nullable=False),
    sa.Column('dropped', sa.BigInteger(), nullable=False),
    sa.Column('faces_seen', sa.BigInteger(), nullable=False),
    sa.Column('last_frame_at', sa.DateTime(), nullable=True),
    sa.Column('reported_at', sa.DateTime(), nullable=False),
    sa.Column('down_since', sa.DateTime(), nullable=True),
    sa.Column('warned_at', sa.DateTime(), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], name=op.f('fk_camera_status_deployment_id_deployments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('deployment_id', 'camera', name=op.f('pk_camera_status'))
    )
    op.create_table('publications',
    sa.Column('deployment_id', sa.Integer(), nullable=False),
    sa.Column('published_at', sa.DateTime(), nullable=False),
    sa.Column('published_by_id', sa.Integer(), nullable=True),
    sa.Column('authorising_rank', sa.String(length=100), nullable=False),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], name=op.f('fk_publications_deployment_id_deployments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['published_by_id'], ['users.id'], name=op.f('fk_publications_published_by_id_users')),
    sa.PrimaryKeyConstraint('deployment_id', name=op.f('pk_publications'))
    )


def downgrade() -> None:
    op.drop_table('publications')
    op.drop_table('camera_status')
