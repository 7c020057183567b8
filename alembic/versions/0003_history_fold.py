"""history fold

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 17:20:24.133694
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Cross-fitting trains one model per fold, each with epochs 1..n: the fold joins
    # the history's primary key. Existing rows are fold 1.
    with op.batch_alter_table("job_epochs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("fold", sa.Integer(), nullable=False, server_default="1")
        )
        batch_op.drop_constraint("pk_job_epochs", type_="primary")
        batch_op.create_primary_key("pk_job_epochs", ["job_id", "fold", "epoch"])


def downgrade() -> None:
    with op.batch_alter_table("job_epochs", schema=None) as batch_op:
        batch_op.drop_constraint("pk_job_epochs", type_="primary")
        batch_op.execute("DELETE FROM job_epochs WHERE fold > 1")
        batch_op.create_primary_key("pk_job_epochs", ["job_id", "epoch"])
        batch_op.drop_column("fold")
