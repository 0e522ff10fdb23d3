"""TOTP secrets encrypted at rest (issue 11)

``totp_credentials.secret`` grows from 64 to 255 characters: it holds a
Fernet token (~140 characters, identity.totp_secrets). Rows in clear stay
as they are and are sealed when next used (they need the keys, which the
migration does not). The downgrade opens the sealed rows with the keys of
``TOTP_ENCRYPTION_KEYS`` (or the development key) so that they fit again.

Revision ID: a3f5c8e2b917
Revises: 7c3d9e1f2a40
Create Date: 2026-12-03 10:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = 'a3f5c8e2b917'
down_revision = '7c3d9e1f2a40'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('totp_credentials', schema=None) as batch_op:
        batch_op.alter_column('secret',
               existing_type=sa.String(length=64),
               type_=sa.String(length=255),
               existing_nullable=False)


def downgrade() -> None:
    from identity import totp_secrets

    credentials = sa.table(
        'totp_credentials',
        sa.column('user_id', sa.String()),
        sa.column('secret', sa.String()),
    )
    connection = op.get_bind()
    rows = connection.execute(sa.select(credentials.c.user_id, credentials.c.secret)).all()
    sealed = [row for row in rows if not totp_secrets.is_clear(row.secret)]
    if sealed:
        box = totp_secrets.load()
        for row in sealed:
            secret, _stale = box.open(row.secret, row.user_id)
            connection.execute(
                credentials.update()
                .where(credentials.c.user_id == row.user_id)
                .values(secret=secret)
            )
    with op.batch_alter_table('totp_credentials', schema=None) as batch_op:
        batch_op.alter_column('secret',
               existing_type=sa.String(length=255),
               type_=sa.String(length=64),
               existing_nullable=False)
