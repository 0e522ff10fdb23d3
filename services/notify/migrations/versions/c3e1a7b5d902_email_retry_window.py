"""email retry window: deliveries get next_attempt_at and give_up_at

Failed rows written before this revision keep both null: they are due at once
and retried for a day after they were written (notify.use_cases).

Revision ID: c3e1a7b5d902
Revises: 91a6759308c0
Create Date: 2026-12-07 07:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import kit.db


revision: str = 'c3e1a7b5d902'
down_revision: Union[str, Sequence[str], None] = '91a6759308c0'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries') as batch:
        batch.add_column(sa.Column('next_attempt_at', kit.db.TZDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('give_up_at', kit.db.TZDateTime(timezone=True), nullable=True))
    op.create_index('ix_deliveries_status_next_attempt', 'deliveries',
                    ['status', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_deliveries_status_next_attempt', table_name='deliveries')
    with op.batch_alter_table('deliveries') as batch:
        batch.drop_column('give_up_at')
        batch.drop_column('next_attempt_at')
