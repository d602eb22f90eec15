"""dd_guard.peak_equity_usd: the equity peak the drawdown-from-peak halt measures from

``risk.max_drawdown_frac`` halts the desk when equity falls that far below its peak; the peak
must survive a restart. Stores written before this migration start from a peak of 0, which
the first mark replaces with the equity of the moment.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dd_guard") as batch:
        batch.add_column(sa.Column("peak_equity_usd", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("dd_guard") as batch:
        batch.drop_column("peak_equity_usd")
