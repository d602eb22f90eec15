"""Replay feed: several symbols' bar files merged in time order, streamed in chunks.

Bars with the same open time are released in the universe's symbol order, so a replay is
deterministic. Memory is bounded by the chunk size, not by the length of the files.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deskd.adapters.bars import CHUNK_ROWS, BarChunk, read_bars


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
    """Merge ``files`` (symbol -> path, iterated in the given order) into one stream."""

    files: dict[str, str]
    timezone: str
    timeframe_s: int
    chunk_rows: int = CHUNK_ROWS
    stats: dict[str, FileStats] = field(default_factory=dict)

    @property
    def symbols(self) -> list[str]:
        return list(self.files)

    def chunks(self) -> Iterator[MergedChunk]:
        """Yield merged chunks until every file is exhausted. Raises BarFileError on bad input."""
        self.stats = {s: FileStats(str(p)) for s, p in self.files.items()}
        streams = [read_bars(Path(p), self.timezone, self.timeframe_s, self.chunk_rows)
                   for p in self.files.values()]
        bufs: list[BarChunk | None] = [self._next(k, it) for k, it in enumerate(streams)]
        while True:
            active = [k for k, b in enumerate(bufs) if b is not None]
            if not active:
                return
            cut = min(int(bufs[k].ts[-1]) for k in active)
            parts: list[tuple[int, BarChunk]] = []
            for k in active:
                b = bufs[k]
                n = int(np.searchsorted(b.ts, cut, side="right"))
                if n == 0:
                    continue
                parts.append((k, _slice(b, 0, n)))
                bufs[k] = _slice(b, n, len(b)) if n < len(b) else self._next(k, streams[k])
            yield _merge(parts)

    def _next(self, k: int, it: Iterator[BarChunk]) -> BarChunk | None:
        chunk = next(it, None)
        if chunk is not None:
            st = self.stats[self.symbols[k]]
            st.bars += len(chunk)
            if st.first_ts is None:
                st.first_ts = int(chunk.ts[0])
            st.last_ts = int(chunk.ts[-1])
        return chunk


def _slice(b: BarChunk, i: int, j: int) -> BarChunk:
    return BarChunk(b.ts[i:j], b.open[i:j], b.high[i:j], b.low[i:j], b.close[i:j], b.volume[i:j])


def _merge(parts: list[tuple[int, BarChunk]]) -> MergedChunk:
    sym = np.concatenate([np.full(len(c), k, dtype=np.int64) for k, c in parts])
    cols = {name: np.concatenate([getattr(c, name) for _, c in parts])
            for name in ("ts", "open", "high", "low", "close", "volume")}
    order = np.argsort(cols["ts"], kind="stable")  # ties keep symbol order
    return MergedChunk(*(cols[n][order] for n in ("ts", "open", "high", "low", "close", "volume")),
                       sym=sym[order])
