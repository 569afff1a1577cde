"""Integrity: ids never reused on SQLite (AUTOINCREMENT), a keyed audit chain (per-entry flag, a
MAC on the head), adjudication reasons, and alert sightings (an adjudicated alert is never
changed by a later sighting: it gets a new alert).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

On SQLite the tables whose ids appear in the audit log are rebuilt with ``AUTOINCREMENT``
(``store.db.upgrade`` runs migrations with foreign keys off and checks them before committing,
as SQLite's documented table-rebuild procedure asks), and each table's sequence starts above
the largest id it ever held *or* that the audit log names (``subject:7`` in the log keeps id 7
from ever naming someone else, even if it was erased before this migration). PostgreSQL's
sequences never go back: nothing to do there.
"""
from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# table -> the audit target prefix naming its rows (None: not named in targets)
ID_TABLES = {
    'users': 'user', 'watchlists': 'watchlist', 'subjects': 'subject', 'reference_images': None, 'templates': None,
    'deployments': 'deployment', 'authorisations': None, 'snapshots': 'snapshot', 'snapshot_templates': None,
    'alerts': 'alert', 'adjudications': None, 'engagements': None, 'api_tokens': 'token',
}


def _audit_max_ids(bind) -> dict[str, int]:
    out: dict[str, int] = {}
    pat = re.compile(r'^([a-z_]+):(\d+)$')
    for (target,) in bind.execute(sa.text("SELECT DISTINCT target FROM audit_events WHERE target LIKE '%:%'")):
        m = pat.match(target or '')
        if m:
            out[m.group(1)] = max(out.get(m.group(1), 0), int(m.group(2)))
    for (details,) in bind.execute(sa.text("SELECT details FROM audit_events WHERE details LIKE '%authorisation_id%'")):
        m = re.search(r'"authorisation_id":(\d+)', details or '')
        if m:
            out['authorisation'] = max(out.get('authorisation', 0), int(m.group(1)))
    return out


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == 'sqlite'
    op.add_column('adjudications', sa.Column('reason', sa.Text(), server_default='', nullable=False))
    op.add_column('audit_events', sa.Column('keyed', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('audit_head', sa.Column('mac', sa.String(length=64), nullable=True))
    op.add_column('audit_head', sa.Column('key_id', sa.String(length=16), nullable=True))
    op.add_column('alerts', sa.Column('sighting', sa.Integer(), server_default='0', nullable=False))
    if not sqlite:
        op.drop_constraint('uq_alerts_track_subject', 'alerts', type_='unique')
        op.create_unique_constraint('uq_alerts_track_subject', 'alerts', ['deployment_id', 'camera', 'track', 'subject_id', 'sighting'])
        return
    # SQLite: rebuild with AUTOINCREMENT (foreign keys are off during migrations; see store.db.upgrade).
    named = _audit_max_ids(bind)
    for table, prefix in ID_TABLES.items():
        with op.batch_alter_table(table, recreate='always', table_kwargs={'sqlite_autoincrement': True}) as b:
            if table == 'alerts':
                b.drop_constraint('uq_alerts_track_subject', type_='unique')
                b.create_unique_constraint('uq_alerts_track_subject', ['deployment_id', 'camera', 'track', 'subject_id', 'sighting'])
        high = bind.execute(sa.text(f'SELECT COALESCE(MAX(id), 0) FROM "{table}"')).scalar() or 0
        high = max(high, named.get(prefix or '', 0), named.get('authorisation', 0) if table == 'authorisations' else 0)
        bind.execute(sa.text('DELETE FROM sqlite_sequence WHERE name = :t'), {'t': table})
        bind.execute(sa.text('INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :s)'), {'t': table, 's': int(high)})


def downgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == 'sqlite'
    if sqlite:
        for table in ID_TABLES:
            with op.batch_alter_table(table, recreate='always', table_kwargs={'sqlite_autoincrement': False}) as b:
                if table == 'alerts':
                    b.drop_constraint('uq_alerts_track_subject', type_='unique')
                    b.create_unique_constraint('uq_alerts_track_subject', ['deployment_id', 'camera', 'track', 'subject_id'])
                    b.drop_column('sighting')
                if table == 'adjudications':
                    b.drop_column('reason')
    else:
        op.drop_constraint('uq_alerts_track_subject', 'alerts', type_='unique')
        op.create_unique_constraint('uq_alerts_track_subject', 'alerts', ['deployment_id', 'camera', 'track', 'subject_id'])
        op.drop_column('alerts', 'sighting')
        op.drop_column('adjudications', 'reason')
    op.drop_column('audit_head', 'key_id')
    op.drop_column('audit_head', 'mac')
    op.drop_column('audit_events', 'keyed')
