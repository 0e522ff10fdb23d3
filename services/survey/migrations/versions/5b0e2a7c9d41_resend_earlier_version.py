"""a file sent again after another one is a new transmission

The unique (survey_id, sha256) made « the same bytes » mean « already
recorded » whatever came in between, so sending back an earlier version
left the later one as the latest. Retries are still recognised (idempotency
key, file id, or the same bytes as the latest transmission); the pair is
now a plain index.

Revision ID: 5b0e2a7c9d41
Revises: 840fb9e8ec76
Create Date: 2026-11-22 10:05:00.000000

"""
from typing import Sequence, Union

from alembic import op


# revision identifiers, used by Alembic.
revision: str = '5b0e2a7c9d41'
down_revision: Union[str, Sequence[str], None] = '840fb9e8ec76'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# the initial migration left both unique constraints unnamed: PostgreSQL
# named them itself, SQLite's batch mode needs a convention to find them
POSTGRESQL_NAME = 'transmissions_survey_id_sha256_key'
CONVENTION = {'uq': 'uq_%(table_name)s_%(column_0_N_name)s'}
BATCH_NAME = 'uq_transmissions_survey_id_sha256'


def _drop_unique(batch_op) -> None:
    if op.get_bind().dialect.name == 'postgresql':
        batch_op.drop_constraint(POSTGRESQL_NAME, type_='unique')
    else:
        batch_op.drop_constraint(BATCH_NAME, type_='unique')


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('transmissions', naming_convention=CONVENTION) as batch_op:
        _drop_unique(batch_op)
        batch_op.create_index('ix_transmissions_survey_sha256', ['survey_id', 'sha256'])


def downgrade() -> None:
    """Downgrade schema (fails if a file was sent again after another one)."""
    with op.batch_alter_table('transmissions', naming_convention=CONVENTION) as batch_op:
        batch_op.drop_index('ix_transmissions_survey_sha256')
        name = POSTGRESQL_NAME if op.get_bind().dialect.name == 'postgresql' else BATCH_NAME
        batch_op.create_unique_constraint(name, ['survey_id', 'sha256'])
