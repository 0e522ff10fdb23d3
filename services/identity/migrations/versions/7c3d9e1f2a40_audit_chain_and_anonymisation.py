"""tamper-evident audit chain, anonymised accounts (issue 11, RGPD)

Adds the chain columns to ``audit`` and its head table, then chains the
entries written before (in the order they were written: time, then id), so
that ``python -m identity.audit_check`` verifies the whole trail at once.

Revision ID: 7c3d9e1f2a40
Revises: 4b1e7c2d9a10
Create Date: 2026-12-02 10:00:00.000000
"""
from alembic import op
import sqlalchemy as sa
import kit.db
from kit import audit as kit_audit


revision = '7c3d9e1f2a40'
down_revision = '4b1e7c2d9a10'
branch_labels = None
depends_on = None


class _Row:
    """An entry being chained (kit.audit.chain_existing sets its fields)."""

    def __init__(self, mapping):
        self.__dict__.update(mapping)


def upgrade() -> None:
    with op.batch_alter_table('audit', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seq', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('detail_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('prev_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('hash', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint('uq_audit_seq', ['seq'])
        batch_op.create_index(batch_op.f('ix_audit_subject_user_id'), ['subject_user_id'], unique=False)
    op.create_table('audit_chain',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('anonymised_at', kit.db.TZDateTime(timezone=True), nullable=True))

    audit = sa.table(
        'audit',
        sa.column('id', sa.String()),
        sa.column('org_id', sa.String()),
        sa.column('subject_user_id', sa.String()),
        sa.column('actor_id', sa.String()),
        sa.column('action', sa.String()),
        sa.column('detail', sa.JSON()),
        sa.column('at', kit.db.TZDateTime()),
        sa.column('seq', sa.Integer()),
        sa.column('detail_hash', sa.String()),
        sa.column('prev_hash', sa.String()),
        sa.column('hash', sa.String()),
    )
    bind = op.get_bind()
    rows = [
        _Row(r._mapping)
        for r in bind.execute(sa.select(audit).order_by(audit.c.at, audit.c.id))
    ]
    seq, head = kit_audit.chain_existing(rows)
    for row in rows:
        bind.execute(
            audit.update()
            .where(audit.c.id == row.id)
            .values(seq=row.seq, detail_hash=row.detail_hash, prev_hash=row.prev_hash, hash=row.hash)
        )
    chain = sa.table('audit_chain', sa.column('name'), sa.column('seq'), sa.column('hash'))
    bind.execute(chain.insert().values(name='audit', seq=seq, hash=head))


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('anonymised_at')
    op.drop_table('audit_chain')
    with op.batch_alter_table('audit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_subject_user_id'))
        batch_op.drop_constraint('uq_audit_seq', type_='unique')
        batch_op.drop_column('hash')
        batch_op.drop_column('prev_hash')
        batch_op.drop_column('detail_hash')
        batch_op.drop_column('seq')
