"""The live daemon's counterfactuals, durable (issue #13): a ``counterfactuals`` table, at most
one row per decision, keyed to the decision's row (decision_id = decisions.id), with
counterfactuals.parquet's fields (times as UTC epoch seconds, cf_entry_ts / cf_exit_ts). And
decisions.price is renamed decision_price, the name the Decision event, decisions.parquet and
the control API give it (values kept).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_FLOATS = ("cf_pnl_pips", "cf_pnl_r", "cf_mae_pips", "cf_mfe_pips", "cf_mae_atr", "cf_mfe_atr")


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.alter_column("price", new_column_name="decision_price", existing_type=sa.Float(),
                           existing_nullable=True)
    op.create_table(
        "counterfactuals",
        sa.Column("desk", sa.String(32), nullable=False),
        sa.Column("scenario", sa.String(32), nullable=False),
        sa.Column("decision_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("cf_outcome", sa.String(4), nullable=True),
        sa.Column("cf_result", sa.String(4), nullable=True),
        *[sa.Column(name, sa.Float(), nullable=True) for name in _FLOATS],
        sa.Column("cf_hold_bars", sa.Integer(), nullable=True),
        sa.Column("cf_entry_ts", sa.BigInteger(), nullable=True),
        sa.Column("cf_entry_price", sa.Float(), nullable=True),
        sa.Column("cf_sl_price", sa.Float(), nullable=True),
        sa.Column("cf_tp_price", sa.Float(), nullable=True),
        sa.Column("cf_exit_ts", sa.BigInteger(), nullable=True),
        sa.Column("cf_exit_price", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("desk", "scenario", "decision_id"),
    )


def downgrade() -> None:
    op.drop_table("counterfactuals")
    with op.batch_alter_table("decisions") as batch:
        batch.alter_column("decision_price", new_column_name="price", existing_type=sa.Float(),
                           existing_nullable=True)
