"""Row revisions and audit subjects: replayed rows and tokens are refused; the chain becomes keyed.

The schema change only adds columns. Re-MACing the rows and re-keying the audit chain needs the master
key, which migrations never see: ``kerasguard.store.upgrade`` does it on the first open with the key.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


# Plain ALTER TABLE, never a batch "move and copy": on SQLite, copying ``models`` would drop the old
# table, and its ON DELETE CASCADE would take every ``model_details`` row with it. SQLite has had
# ADD COLUMN always and DROP COLUMN since 3.35.


def upgrade() -> None:
    op.add_column("models", sa.Column("revision", sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column("tokens", sa.Column("revision", sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column("audit", sa.Column("subject", sa.String(300), nullable=True))
    op.add_column("audit", sa.Column("revision", sa.BigInteger(), nullable=True))
    op.create_index("ix_audit_subject_seq", "audit", ["subject", "seq"])
    op.create_index("ix_audit_namespace_subject", "audit", ["namespace", "subject", "revision"])


def downgrade() -> None:
    op.drop_index("ix_audit_namespace_subject", "audit")
    op.drop_index("ix_audit_subject_seq", "audit")
    op.drop_column("audit", "revision")
    op.drop_column("audit", "subject")
    op.drop_column("tokens", "revision")
    op.drop_column("models", "revision")
