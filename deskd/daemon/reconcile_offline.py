"""``deskd reconcile`` without a running daemon: the store's open positions against the
broker's open trades, read once."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from deskd.adapters.v20.client import Credentials, V20Client
from deskd.adapters.v20.reconcile import Holding, broker_holdings, reconcile
from deskd.configs.models import DeskConfig
from deskd.persistence.store import open_store, positions


def reconcile_store(cfg: DeskConfig, store_url: str, scenario: str, creds: Credentials) -> tuple[list[dict], int]:
    """Offline reconciliation (``deskd reconcile`` without --daemon): the store's open
    positions of (cfg.desk, ``scenario``) against the broker's open trades. Returns (the
    differences as dicts, the number of positions in the store). Raises BrokerError when the
    broker cannot be read, StoreError (also when there is no store at ``store_url``: a
    read-only verb never creates one)."""
    engine = open_store(store_url, create=False)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(positions).filter_by(desk=cfg.desk, scenario=scenario)).mappings().all()
    finally:
        engine.dispose()
    expected = {r["symbol"]: Holding(r["symbol"], r["side"], r["units"], r["entry_price"], r["sl_price"],
                                     r["tp_price"]) for r in rows}

    async def fetch() -> list[dict]:
        async with V20Client(creds, max_attempts=3) as client:
            return await client.open_trades()
    trades = asyncio.run(fetch())
    held, foreign = broker_holdings(trades, f"{cfg.desk}-{scenario}-", {r["client_order_id"] for r in rows})
    return [d.as_dict() for d in reconcile(expected, held, foreign)], len(expected)
