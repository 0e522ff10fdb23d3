"""tamper-evident partner audit trail (kit.audit)

Renames the ``partner_audit`` columns to kit.audit's (``partner_id`` ->
``org_id``, ``actor`` -> ``actor_id``, ``details`` -> ``detail``), adds
``subject_user_id`` and the chain columns, creates the head table
``partner_audit_chain``, then chains the entries written before (in the order
they were written: time, then id), so that ``python -m notify.audit_check``
verifies the whole trail at once.

Revision ID: e5b2c8d41f67
Revises: c3e1a7b5d902
Create Date: 2026-12-09 10:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import kit.db
from kit import audit as kit_audit


revision: str = 'e5b2c8d41f67'
down_revision: Union[str, Sequence[str], None] = 'c3e1a7b5d902'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


class _Row:
    """An entry being chained (kit.audit.chain_existing sets its fields)."""

    def __init__(self, mapping):
        self.__dict__.update(mapping)


def upgrade() -> None:
    op.drop_index('ix_partner_audit_partner_id', table_name='partner_audit')
    with op.batch_alter_table('partner_audit', schema=None) as batch_op:
        batch_op.alter_column('partner_id', new_column_name='org_id',
                              existing_type=sa.String(length=32), existing_nullable=False)
        batch_op.alter_column('actor', new_column_name='actor_id',
                              existing_type=sa.String(length=64), existing_nullable=True)
        batch_op.alter_column('details', new_column_name='detail',
                              existing_type=sa.JSON(), existing_nullable=False)
        batch_op.add_column(sa.Column('subject_user_id', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('seq', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('detail_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('prev_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('hash', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint('uq_partner_audit_seq', ['seq'])
    op.create_index('ix_partner_audit_org_id', 'partner_audit', ['org_id'], unique=False)
    op.create_table('partner_audit_chain',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )

    audit = sa.table(
        'partner_audit',
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
    chain = sa.table('partner_audit_chain', sa.column('name'), sa.column('seq'), sa.column('hash'))
    bind.execute(chain.insert().values(name='audit', seq=seq, hash=head))


def downgrade() -> None:
    op.drop_table('partner_audit_chain')
    op.drop_index('ix_partner_audit_org_id', table_name='partner_audit')
    with op.batch_alter_table('partner_audit', schema=None) as batch_op:
        batch_op.drop_constraint('uq_partner_audit_seq', type_='unique')
        batch_op.drop_column('hash')
        batch_op.drop_column('prev_hash')
        batch_op.drop_column('detail_hash')
        batch_op.drop_column('seq')
        batch_op.drop_column('subject_user_id')
        batch_op.alter_column('detail', new_column_name='details',
                              existing_type=sa.JSON(), existing_nullable=False)
        batch_op.alter_column('actor_id', new_column_name='actor',
                              existing_type=sa.String(length=64), existing_nullable=True)
        batch_op.alter_column('org_id', new_column_name='partner_id',
                              existing_type=sa.String(length=32), existing_nullable=False)
    op.create_index('ix_partner_audit_partner_id', 'partner_audit', ['partner_id'], unique=False)
