"""Each decision's context (issue #13): the decision bar's close (price), the ATR the
strategy sized with (atr_pips) and its deciding metric (score_name, score). NULL in rows
written before this migration.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_CONTEXT = (("price", sa.Float()), ("atr_pips", sa.Float()), ("score_name", sa.String(64)),
            ("score", sa.Float()))


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        for name, kind in _CONTEXT:
            batch.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        for name, _ in reversed(_CONTEXT):
            batch.drop_column(name)
