"""The cost split of every fill and trade: half spread, slippage, and whether the spike
multiplier applied (issue #12): fills.spread_pips / slippage_pips / spike, and the entry's
and exit's on trades (entry_* also on positions, so a restart keeps an open trade's). NULL in
rows written before this migration, and where a broker did not report its bid and ask.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_SPLIT = (("spread_pips", sa.Float()), ("slippage_pips", sa.Float()), ("spike", sa.Boolean()))


def upgrade() -> None:
    with op.batch_alter_table("fills") as batch:
        for name, kind in _SPLIT:
            batch.add_column(sa.Column(name, kind, nullable=True))
    for table, legs in (("trades", ("entry", "exit")), ("positions", ("entry",))):
        with op.batch_alter_table(table) as batch:
            for leg in legs:
                for name, kind in _SPLIT:
                    batch.add_column(sa.Column(f"{leg}_{name}", kind, nullable=True))


def downgrade() -> None:
    for table, legs in (("trades", ("entry", "exit")), ("positions", ("entry",))):
        with op.batch_alter_table(table) as batch:
            for leg in legs:
                for name, _ in _SPLIT:
                    batch.drop_column(f"{leg}_{name}")
    with op.batch_alter_table("fills") as batch:
        for name, _ in _SPLIT:
            batch.drop_column(name)
