"""Replay: several symbols' bar files merged in time order, streamed in chunks, and the one bar
loop that feeds them to a desk (a backtest, and the paper daemon through its pacing).

Bars with the same open time are released in the universe's symbol order, so a replay is
deterministic. Memory is bounded by the chunk size, not by the length of the files. The end of
replayed data (and only of replayed data) closes out: unfilled orders are cancelled, open
positions close at their last close with exit reason EOD.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from deskd.adapters.bars import CHUNK_ROWS, BarChunk, BarFileError, read_bars
from deskd.configs.models import DeskConfig
from deskd.core.events import BarClosed, ExitReason
from deskd.core.time import iso
from deskd.desk.desk import Desk


@dataclass(frozen=True, slots=True)
class MergedChunk(BarChunk):
    """Bars of several symbols in (time, symbol order) order; ``sym`` indexes ``symbols``."""

    sym: np.ndarray


@dataclass
class FileStats:
    path: str
    bars: int = 0
    first_ts: int | None = None
    last_ts: int | None = None


@dataclass
class ReplayFeed:
    """Merge ``files`` (symbol -> path, iterated in the given order) into one stream;
    ``timezone`` is the zone of every file, or of each by symbol (a mapping)."""

    files: dict[str, str]
    timezone: str | Mapping[str, str]
    timeframe_s: int
    chunk_rows: int = CHUNK_ROWS
    stats: dict[str, FileStats] = field(default_factory=dict)

    @property
    def symbols(self) -> list[str]:
        return list(self.files)

    def chunks(self) -> Iterator[MergedChunk]:
        """Yield merged chunks until every file is exhausted. Raises BarFileError on bad input."""
        self.stats = {s: FileStats(str(p)) for s, p in self.files.items()}
        streams = [read_bars(Path(p), self.timezone_of(s), self.timeframe_s, self.chunk_rows)
                   for s, p in self.files.items()]
        bufs: list[BarChunk | None] = [self._next(k, it) for k, it in enumerate(streams)]
        while True:
            if all(b is None for b in bufs):
                return
            self._check_overlap(bufs)
            live = [(k, b) for k, b in enumerate(bufs) if b is not None]
            cut = min(int(b.ts[-1]) for _, b in live)
            parts: list[tuple[int, BarChunk]] = []
            for k, b in live:
                n = int(np.searchsorted(b.ts, cut, side="right"))
                if n == 0:
                    continue
                parts.append((k, _slice(b, 0, n)))
                bufs[k] = _slice(b, n, len(b)) if n < len(b) else self._next(k, streams[k])
            yield _merge(parts)

    def timezone_of(self, symbol: str) -> str:
        return self.timezone if isinstance(self.timezone, str) else self.timezone[symbol]

    def _check_overlap(self, bufs: list[BarChunk | None]) -> None:
        """Raise BarFileError when a file has ended before another one's first bar: the
        symbols never trade side by side (the desk would trade one, then the other)."""
        ended = [(s, st) for (s, st), b in zip(self.stats.items(), bufs) if b is None]
        for sym, st in ended:
            later = [(s, o) for s, o in self.stats.items()
                     if o.first_ts is not None and st.last_ts is not None and o.first_ts > st.last_ts]
            if later:
                s, o = later[0]
                raise BarFileError(f"{st.path} ({sym}, {iso(st.first_ts or 0)} to {iso(st.last_ts or 0)}) ends "
                                   f"before {o.path} ({s}) begins at {iso(o.first_ts or 0)}: the symbols' "
                                   f"files do not overlap in time")

    def _next(self, k: int, it: Iterator[BarChunk]) -> BarChunk | None:
        chunk = next(it, None)
        if chunk is not None:
            st = self.stats[self.symbols[k]]
            st.bars += len(chunk)
            if st.first_ts is None:
                st.first_ts = int(chunk.ts[0])
            st.last_ts = int(chunk.ts[-1])
        return chunk


@dataclass
class MemoryFeed(ReplayFeed):
    """A :class:`ReplayFeed` read once into memory and replayed from there as often as asked
    (the tuner runs hundreds of desks on the same bars). About 56 bytes per bar."""

    loaded: list[MergedChunk] = field(default_factory=list)
    loaded_stats: dict[str, FileStats] = field(default_factory=dict)

    @classmethod
    def read(cls, feed: ReplayFeed) -> MemoryFeed:
        """Read every chunk of ``feed``. Raises BarFileError as its :meth:`chunks` does."""
        loaded = list(feed.chunks())
        return cls(feed.files, feed.timezone, feed.timeframe_s, feed.chunk_rows, dict(feed.stats),
                   loaded, {s: replace(st) for s, st in feed.stats.items()})

    def chunks(self) -> Iterator[MergedChunk]:
        self.stats = {s: replace(st) for s, st in self.loaded_stats.items()}
        yield from self.loaded


def replay_feed(cfg: DeskConfig) -> ReplayFeed:
    """The feed of ``cfg``'s bar files, in universe order, each read in its own timezone."""
    syms = cfg.universe.symbols
    return ReplayFeed({s: cfg.data.files[s] for s in syms}, {s: cfg.data.timezone_of(s) for s in syms},
                      cfg.universe.timeframe_s)


def replay_bars(feed: ReplayFeed) -> Iterator[BarClosed]:
    """The feed's bars, one BarClosed at a time, in merged time order. Raises BarFileError."""
    for ch in feed.chunks():
        yield from bars_of(ch, feed.symbols, feed.timeframe_s)


def replay(desk: Desk, feed: ReplayFeed, progress: Callable[[int], None] | None = None,
           end_bar: Callable[[BarClosed], None] | None = None) -> int:
    """Trade every bar of ``feed`` through ``desk`` (``end_bar(bar)`` after each, e.g. the
    store's), then close out as at the end of data. ``progress(n)`` is called after each
    chunk with its number of bars. Returns the number of bars.
    Raises ValueError when the feed's symbols are not the desk's universe, BarFileError."""
    _check_universe(desk, feed)
    on_bar = desk.on_bar
    syms = feed.symbols
    tf = feed.timeframe_s
    new = tuple.__new__
    n = 0
    for ch in feed.chunks():  # replay_bars(feed), inlined: a generator costs ~3 % per bar here
        for k, ts, o, h, lo, c, v in zip(ch.sym.tolist(), ch.ts.tolist(), ch.open.tolist(),
                                         ch.high.tolist(), ch.low.tolist(), ch.close.tolist(),
                                         ch.volume.tolist()):
            bar = new(BarClosed, (syms[k], tf, ts, o, h, lo, c, v))
            on_bar(bar)
            if end_bar is not None:
                end_bar(bar)
        n += len(ch)
        if progress is not None:
            progress(len(ch))
    close_out(desk)
    return n


@dataclass(frozen=True)
class Window:
    """The part of a replay that trades: bars opening in [``start_ts``, ``end_ts``) (UTC epoch
    seconds; None = unbounded). The ``warmup_bars`` bars of each symbol just before
    ``start_ts`` are observed (indicators and strategies, no trading) first; earlier bars are
    read and skipped."""

    start_ts: int | None = None
    end_ts: int | None = None
    warmup_bars: int | None = 0  # None: the caller fills in its strategies' warm-up


def replay_window(desk: Desk, feed: ReplayFeed, window: Window,
                  progress: Callable[[int], None] | None = None,
                  end_bar: Callable[[BarClosed], None] | None = None) -> int:
    """:func:`replay` restricted to ``window``: warm-up, then the bars in the window, then the
    close-out at the last bar traded. Returns the number of bars traded (0 when the window
    holds none). Raises as :func:`replay` does."""
    _check_universe(desk, feed)
    start = window.start_ts if window.start_ts is not None else -(2**62)
    end = window.end_ts if window.end_ts is not None else 2**62
    keep = window.warmup_bars or 0
    before: dict[str, deque[BarClosed]] | None = (
        {s: deque(maxlen=keep) for s in feed.symbols} if keep else None)
    order = {s: i for i, s in enumerate(feed.symbols)}
    on_bar = desk.on_bar
    n = 0
    warmed = False
    for ch in feed.chunks():
        bars = bars_of(ch, feed.symbols, feed.timeframe_s)
        for bar in bars:
            ts = bar.bar_ts
            if ts < start:
                if before is not None:
                    before[bar.symbol].append(bar)
                continue
            if ts >= end:
                break
            if not warmed:
                warmed = True
                if before is not None:
                    for b in sorted((b for q in before.values() for b in q),
                                    key=lambda b: (b.bar_ts, order[b.symbol])):
                        desk.warm_up(b)
            on_bar(bar)
            if end_bar is not None:
                end_bar(bar)
            n += 1
        if progress is not None:
            progress(len(bars))
        if bars and bars[-1].bar_ts >= end:
            break
    if n:
        close_out(desk)
    return n


def bars_of(chunk: MergedChunk, symbols: list[str], timeframe_s: int) -> list[BarClosed]:
    """The bars of one merged chunk as BarClosed events, in order."""
    new = tuple.__new__  # a NamedTuple without its Python-level __new__ (hot path)
    return [new(BarClosed, (symbols[k], timeframe_s, ts, o, h, lo, c, v))
            for k, ts, o, h, lo, c, v in zip(chunk.sym.tolist(), chunk.ts.tolist(), chunk.open.tolist(),
                                             chunk.high.tolist(), chunk.low.tolist(), chunk.close.tolist(),
                                             chunk.volume.tolist())]


def _check_universe(desk: Desk, feed: ReplayFeed) -> None:
    if feed.symbols != list(desk.cfg.universe.symbols):
        raise ValueError(f"feed symbols {feed.symbols} differ from the universe "
                         f"{desk.cfg.universe.symbols}")


def close_out(desk: Desk) -> None:
    """End of replayed data: cancel unfilled orders, close open positions at their symbol's
    last close (EOD), and mark the equity curve's END row. The desk must trade on paper."""
    close_at_last = getattr(desk.broker, "close_at_last", None)
    if close_at_last is None:
        raise TypeError("only a paper broker has an end of data; a live desk flattens")
    desk.cancel_open_orders("end of data")
    close_at_last(ExitReason.EOD)
    if desk.last_bar_ts is not None:
        desk.ledger.mark(desk.last_bar_ts + desk.tf_s, "END")


def _slice(b: BarChunk, i: int, j: int) -> BarChunk:
    return BarChunk(b.ts[i:j], b.open[i:j], b.high[i:j], b.low[i:j], b.close[i:j], b.volume[i:j])


def _merge(parts: list[tuple[int, BarChunk]]) -> MergedChunk:
    sym = np.concatenate([np.full(len(c), k, dtype=np.int64) for k, c in parts])
    cols = {name: np.concatenate([getattr(c, name) for _, c in parts])
            for name in ("ts", "open", "high", "low", "close", "volume")}
    order = np.argsort(cols["ts"], kind="stable")  # ties keep symbol order
    c = {n: v[order] for n, v in cols.items()}
    return MergedChunk(c["ts"], c["open"], c["high"], c["low"], c["close"], c["volume"], sym=sym[order])
