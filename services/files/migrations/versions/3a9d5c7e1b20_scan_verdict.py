"""the malware verdict of each file (issue 11: a large document is answered
before its verdict, quarantined until it comes)

Revision ID: 3a9d5c7e1b20
Revises: b1cf36623fc7
Create Date: 2026-12-07 16:10:00.000000

Files stored before this revision were stored after a synchronous scan, or
with no scanner: they count as ``clean`` (the answer they got said so).
"""
from alembic import op
import sqlalchemy as sa


revision = '3a9d5c7e1b20'
down_revision = 'b1cf36623fc7'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scan_status', sa.String(length=16), nullable=False,
                                      server_default='clean'))
        batch_op.add_column(sa.Column('scan_signature', sa.String(length=200), nullable=True))
        batch_op.create_index(batch_op.f('ix_files_scan_status'), ['scan_status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_files_scan_status'))
        batch_op.drop_column('scan_signature')
        batch_op.drop_column('scan_status')
