"""sizes and row counts in 64 bits

PostgreSQL's INTEGER is 32-bit: an artifact or a dataset file of 2 GiB or more was refused (and
the run that logged it failed). SQLite's INTEGER is 64-bit already: nothing to do there (a
rebuild of dataset_version, which other tables refer to, fails with foreign keys on).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = {"artifact": ("size_bytes",), "dataset_version": ("size_bytes", "n_rows")}


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, columns in COLUMNS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.alter_column(column, existing_type=sa.Integer(), type_=sa.BigInteger())


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, columns in COLUMNS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.alter_column(column, existing_type=sa.BigInteger(), type_=sa.Integer())
