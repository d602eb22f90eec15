"""Alembic environment: migrations run on the connection deskd passes in (open_store), or,
from the alembic command line, on DESKD_STORE_URL."""

import os

from alembic import context
from sqlalchemy import create_engine

from deskd.persistence.store import metadata

config = context.config


def run() -> None:
    conn = config.attributes.get("connection")
    if conn is not None:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(os.environ["DESKD_STORE_URL"])
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run()
