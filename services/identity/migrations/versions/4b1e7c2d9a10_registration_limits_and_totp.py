"""registration limits and two-factor sign-in (issue 11)

Revision ID: 4b1e7c2d9a10
Revises: ed8e2f6d76a3
Create Date: 2026-12-01 10:00:00.000000
"""
from alembic import op
import sqlalchemy as sa
import kit.db


revision = '4b1e7c2d9a10'
down_revision = 'ed8e2f6d76a3'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('registration_attempts',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('siret', sa.String(length=14), nullable=False),
    sa.Column('at', kit.db.TZDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', kit.db.TZDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('registration_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_registration_attempts_email_at', ['email', 'at'], unique=False)
        batch_op.create_index(batch_op.f('ix_registration_attempts_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_registration_attempts_siret'), ['siret'], unique=False)

    op.create_table('totp_credentials',
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('secret', sa.String(length=64), nullable=False),
    sa.Column('confirmed_at', kit.db.TZDateTime(timezone=True), nullable=True),
    sa.Column('last_step', sa.Integer(), nullable=False),
    sa.Column('created_at', kit.db.TZDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('user_id')
    )
    op.create_table('recovery_codes',
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('used_at', kit.db.TZDateTime(timezone=True), nullable=True),
    sa.Column('created_at', kit.db.TZDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('code_hash')
    )
    with op.batch_alter_table('recovery_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recovery_codes_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('mfa', sa.String(length=8), nullable=False, server_default='ok')
        )
        batch_op.add_column(
            sa.Column('mfa_at', kit.db.TZDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_column('mfa_at')
        batch_op.drop_column('mfa')
    with op.batch_alter_table('recovery_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recovery_codes_user_id'))
    op.drop_table('recovery_codes')
    op.drop_table('totp_credentials')
    with op.batch_alter_table('registration_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_registration_attempts_siret'))
        batch_op.drop_index(batch_op.f('ix_registration_attempts_at'))
        batch_op.drop_index('ix_registration_attempts_email_at')
    op.drop_table('registration_attempts')
