"""Prometheus metrics of the running desk (``GET /metrics`` on the control API).

Names follow Prometheus conventions: ``deskd_`` prefix, base units in the name (``_usd``,
``_seconds``, ``_ratio``), ``_total`` for counters; labels are bounded (symbols and
strategies of the config, the four states, a handful of broker endpoints and outcomes).

Counters and histograms are updated from bus events (orders, fills, rejections) and from the
broker client's request observer; everything else is read from the desk when Prometheus
scrapes, so the per-bar path pays nothing for metrics.

| metric | type | labels | meaning |
|---|---|---|---|
| deskd_desk_state | gauge | state | 1 for the current state, 0 for the others |
| deskd_state_transitions_total | counter | from, to, trigger | state machine transitions |
| deskd_equity_usd, deskd_balance_usd | gauge | | MTM equity, realised balance |
| deskd_drawdown_ratio | gauge | window=day,week,peak | fall from the day/week anchor or the running peak |
| deskd_drawdown_limit_ratio | gauge | window=day,week | the configured halt limits |
| deskd_open_positions | gauge | symbol, strategy | 1 while the strategy holds the symbol |
| deskd_open_risk_usd | gauge | symbol, strategy | planned risk (entry to stop) of the open position |
| deskd_orders_submitted_total, deskd_orders_filled_total, deskd_orders_rejected_total | counter | intent | orders decided, filled, refused/failed |
| deskd_execution_errors_total | counter | | execution errors counted by the state machine |
| deskd_broker_request_duration_seconds | histogram | endpoint | each try of a broker request |
| deskd_broker_request_errors_total | counter | endpoint, outcome | tries that failed: timeout, connection, malformed, 5xx, 429, rejected |
| deskd_bar_to_order_seconds | histogram | | bar entering the pipeline to the order leaving the desk |
| deskd_last_bar_timestamp_seconds | gauge | symbol | open time of the last bar processed |
| deskd_bar_age_seconds | gauge | symbol | feed clock minus the last bar's close (stale feed) |
| deskd_market_open | gauge | | 1 on FX trading days (Sunday 17:00 to Friday 17:00 New York) |
| deskd_timeframe_seconds | gauge | | bar length |
| deskd_reconciliations_total | counter | result=in_sync,differences,unknown | reconciliation runs |
| deskd_reconcile_differences | gauge | symbol | differences found by the last reconciliation |
| deskd_strategy_health | gauge | strategy, status | 1 for the strategy's health status (OK, WEAKENING, OUT_OF_PROFILE) |
| deskd_strategy_win_rate_ratio, deskd_strategy_avg_pnl_usd, deskd_strategy_expectancy_r | gauge | strategy | over the health window |
| deskd_strategy_window_trades | gauge | strategy | closed trades in the health window |
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from deskd.core.events import Fill, OrderIntent, OrderRejected, StateChanged
from deskd.daemon.strategy_health import STATUSES
from deskd.desk.state import DeskState

LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
BROKER_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class DeskMetrics:
    """The registry of one running desk. ``runner`` is the DeskRunner; ``session`` the
    LiveSession with a v20 broker (None on paper); ``health`` the HealthMonitor."""

    def __init__(self, runner, session=None, health=None):
        self.runner = runner
        self.session = session
        self.health = health
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.submitted = Counter("deskd_orders_submitted", "Orders decided by the desk", ["intent"], registry=r)
        self.filled = Counter("deskd_orders_filled", "Orders filled", ["intent"], registry=r)
        self.rejected = Counter("deskd_orders_rejected", "Orders refused or failed at the broker", ["intent"],
                                registry=r)
        self.broker_latency = Histogram("deskd_broker_request_duration_seconds", "Each try of a broker request",
                                        ["endpoint"], buckets=BROKER_BUCKETS_S, registry=r)
        self.broker_errors = Counter("deskd_broker_request_errors", "Broker request tries that failed",
                                     ["endpoint", "outcome"], registry=r)
        self.transitions = Counter("deskd_state_transitions", "State machine transitions",
                                   ["from", "to", "trigger"], registry=r)
        self.bar_to_order = Histogram("deskd_bar_to_order_seconds",
                                      "Bar entering the pipeline to the order leaving the desk",
                                      buckets=LATENCY_BUCKETS_S, registry=r)
        for intent in ("ENTRY", "EXIT"):  # present from the first scrape, at 0
            for c in (self.submitted, self.filled, self.rejected):
                c.labels(intent)
        r.register(_Snapshot(self))
        bus = runner.desk.bus
        bus.subscribe(OrderIntent, self._on_order)
        bus.subscribe(Fill, lambda f: self.filled.labels(f.intent.value).inc())
        bus.subscribe(OrderRejected, self._on_rejected)
        bus.subscribe(StateChanged, lambda e: self.transitions.labels(e.old, e.new, e.trigger).inc())
        if session is not None:
            session.client.observer = self._on_broker_request

    def _on_order(self, o: OrderIntent) -> None:
        self.submitted.labels(o.intent.value).inc()
        started = self.runner.bar_started
        if started is not None:
            self.bar_to_order.observe(time.perf_counter() - started)

    def _on_rejected(self, e: OrderRejected) -> None:
        self.rejected.labels(e.intent.value if e.intent is not None else "ENTRY").inc()

    def _on_broker_request(self, endpoint: str, seconds: float, outcome: str) -> None:
        self.broker_latency.labels(endpoint).observe(seconds)
        if outcome != "ok":
            self.broker_errors.labels(endpoint, outcome).inc()

    def render(self) -> bytes:
        """The exposition text of every metric."""
        return generate_latest(self.registry)


class _Snapshot:
    """Gauges (and counters kept by the desk) read at scrape time."""

    def __init__(self, m: DeskMetrics):
        self.m = m

    def describe(self):
        return []

    def collect(self):
        m = self.m
        runner = m.runner
        d = runner.desk
        cfg = d.cfg
        g = GaugeMetricFamily("deskd_desk_state", "1 for the desk's current state", labels=["state"])
        for s in DeskState:
            g.add_metric([s.value], 1.0 if d.state.state is s else 0.0)
        yield g
        lg, guard = d.ledger, d.guard
        yield GaugeMetricFamily("deskd_equity_usd", "Mark-to-market equity", value=lg.equity_usd)
        yield GaugeMetricFamily("deskd_balance_usd", "Realised balance", value=lg.balance_usd)
        eq = lg.equity_usd
        dd = GaugeMetricFamily("deskd_drawdown_ratio", "Fall from the anchor or peak, as a fraction",
                               labels=["window"])
        for window, anchor in (("day", guard.day_anchor_usd), ("week", guard.week_anchor_usd),
                               ("peak", lg.peak_usd)):
            dd.add_metric([window], max(0.0, (anchor - eq) / anchor) if anchor and anchor > 0 else 0.0)
        yield dd
        lim = GaugeMetricFamily("deskd_drawdown_limit_ratio", "Drawdown that halts the desk", labels=["window"])
        lim.add_metric(["day"], cfg.risk.dd_day_limit_frac)
        lim.add_metric(["week"], cfg.risk.dd_week_limit_frac)
        yield lim
        pos = GaugeMetricFamily("deskd_open_positions", "Open positions", labels=["symbol", "strategy"])
        risk = GaugeMetricFamily("deskd_open_risk_usd", "Planned risk of open positions",
                                 labels=["symbol", "strategy"])
        pairs = {(s, st.strategy_id) for s, sts in d.strategies.items() for st in sts}
        pairs |= {(s, t.strategy_id) for s, t in lg.open.items()}
        for sym, sid in sorted(pairs):
            t = lg.open.get(sym)
            held = t is not None and t.strategy_id == sid
            pos.add_metric([sym, sid], 1.0 if held else 0.0)
            risk.add_metric([sym, sid], t.risk_usd if held else 0.0)
        yield pos
        yield risk
        yield CounterMetricFamily("deskd_execution_errors", "Execution errors counted by the state machine",
                                  value=d.execution_errors_total)
        last = GaugeMetricFamily("deskd_last_bar_timestamp_seconds", "Open time of the last bar processed",
                                 labels=["symbol"])
        age = GaugeMetricFamily("deskd_bar_age_seconds", "Feed clock minus the close of the last bar",
                                labels=["symbol"])
        now = runner.clock()
        for sym in cfg.universe.symbols:
            ts = runner.gate.last.get(sym)
            if ts is not None:
                last.add_metric([sym], ts)
                age.add_metric([sym], max(0.0, now - (ts + d.tf_s)))
        yield last
        yield age
        yield GaugeMetricFamily("deskd_market_open", "1 on FX trading days",
                                value=1.0 if guard.cal.trading_day(int(now)).weekday() < 5 else 0.0)
        yield GaugeMetricFamily("deskd_timeframe_seconds", "Bar length", value=d.tf_s)
        yield from self._reconciliation()
        yield from self._health()

    def _reconciliation(self):
        s = self.m.session
        runs = CounterMetricFamily("deskd_reconciliations", "Reconciliation runs", labels=["result"])
        diffs = GaugeMetricFamily("deskd_reconcile_differences", "Differences found by the last reconciliation",
                                  labels=["symbol"])
        counts = s.reconcile_counts if s is not None else {}
        for result in ("in_sync", "differences", "unknown"):
            runs.add_metric([result], counts.get(result, 0))
        found: dict[str, int] = {}
        if s is not None and s.last_reconcile is not None:
            for x in s.last_reconcile.diffs:
                found[x.symbol] = found.get(x.symbol, 0) + 1
        for sym in sorted(set(self.m.runner.cfg.universe.symbols) | set(found)):
            diffs.add_metric([sym], found.get(sym, 0))
        yield runs
        yield diffs

    def _health(self):
        h = self.m.health
        status = GaugeMetricFamily("deskd_strategy_health", "1 for the strategy's health status",
                                   labels=["strategy", "status"])
        fams = {name: GaugeMetricFamily(name, doc, labels=["strategy"]) for name, doc in (
            ("deskd_strategy_win_rate_ratio", "Win rate over the health window"),
            ("deskd_strategy_avg_pnl_usd", "Average P&L per trade over the health window"),
            ("deskd_strategy_expectancy_r", "Mean R-multiple over the health window"),
            ("deskd_strategy_window_trades", "Closed trades in the health window"))}
        if h is not None:
            for sid in h.strategies:
                a = h.assess(sid)
                for st in STATUSES:
                    status.add_metric([sid, st], 1.0 if a.status == st else 0.0)
                fams["deskd_strategy_window_trades"].add_metric([sid], a.window_trades)
                for name, v in (("deskd_strategy_win_rate_ratio", a.win_rate),
                                ("deskd_strategy_avg_pnl_usd", a.avg_pnl_usd),
                                ("deskd_strategy_expectancy_r", a.expectancy_r)):
                    if v is not None:
                        fams[name].add_metric([sid], v)
        yield status
        yield from fams.values()
