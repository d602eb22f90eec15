"""fills.fill_ts apart from bar_ts; exit_reason wide enough for every ExitReason

A broker fill happens at its own time inside a bar: fills now record both (rows written
before this migration keep fill_ts NULL; their bar_ts held the fill time). exit_reason was
VARCHAR(8), too short for MARGIN_CLOSEOUT and BROKER_CLOSE, which PostgreSQL would refuse.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES_WITH_EXIT_REASON = ("orders", "fills", "trades")


def upgrade() -> None:
    with op.batch_alter_table("fills") as batch:
        batch.add_column(sa.Column("fill_ts", sa.BigInteger(), nullable=True))
    for table in TABLES_WITH_EXIT_REASON:
        with op.batch_alter_table(table) as batch:
            batch.alter_column("exit_reason", type_=sa.String(length=16), existing_type=sa.String(length=8))


def downgrade() -> None:
    for table in TABLES_WITH_EXIT_REASON:
        with op.batch_alter_table(table) as batch:
            batch.alter_column("exit_reason", type_=sa.String(length=8), existing_type=sa.String(length=16))
    with op.batch_alter_table("fills") as batch:
        batch.drop_column("fill_ts")
