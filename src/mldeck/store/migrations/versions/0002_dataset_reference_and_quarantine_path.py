"""dataset reference and quarantine path

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reference_version_id", sa.Integer(), nullable=True))

    with op.batch_alter_table("dataset_version", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "quarantine_path",
                sqlmodel.sql.sqltypes.AutoString(),
                nullable=False,
                server_default="",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("dataset_version", schema=None) as batch_op:
        batch_op.drop_column("quarantine_path")

    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.drop_column("reference_version_id")
