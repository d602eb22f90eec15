"""Echoing input in messages, safely: a bad value from a file or a command line is shown
quoted, with control characters escaped and its length bounded, so a 5 MB field gives an
80-character error and bytes from a file never reach the terminal raw.

* :func:`shown` quotes one value (``'abc'``, ``'a\\x1b[2Jb'``, ``'xxxx…' (5000000 characters)``):
  every message that echoes input uses it;
* :func:`printable` makes a whole message line safe (the CLI's last guard for messages built
  by libraries: escapes, no quotes, bounded).
"""

from __future__ import annotations

#: characters of a value shown before it is cut
SHOWN_LIMIT = 80
#: characters of one message line printed before it is cut
LINE_LIMIT = 2000


def _escaped(ch: str, quote: str | None) -> str:
    if ch == "\\" and quote is not None:
        return "\\\\"
    if ch == quote:
        return "\\" + ch
    if ch.isprintable():
        return ch
    return repr(ch)[1:-1]  # '\n', '\t', '\x1b', '\u200b', ... as Python writes them


def _escape(text: str, limit: int, quote: str | None) -> tuple[str, bool]:
    """(``text`` escaped and cut at ``limit`` characters of output, whether it was cut)."""
    out: list[str] = []
    n = 0
    for ch in text:  # stops after ``limit`` characters at most: a 5 MB value costs nothing
        piece = _escaped(ch, quote)
        if n + len(piece) > limit:
            return "".join(out), True
        out.append(piece)
        n += len(piece)
    return "".join(out), False


def shown(value: object, limit: int = SHOWN_LIMIT) -> str:
    """``value`` (its ``str()``) quoted as Python's repr quotes a string, control and other
    non-printable characters escaped, and cut after ``limit`` characters with an ellipsis
    and the full length: the one way a message echoes an input value."""
    text = value if isinstance(value, str) else str(value)
    body, cut = _escape(text, limit, "'")
    if cut:
        return f"'{body}…' ({len(text):,} characters)"
    return f"'{body}'"


def printable(line: str, limit: int = LINE_LIMIT) -> str:
    """``line`` with control and non-printable characters escaped (no quotes added) and cut
    after ``limit`` characters: safe to print on a terminal as one line."""
    body, cut = _escape(line, limit, None)
    return f"{body}… ({len(line):,} characters)" if cut else body


def duration_text(seconds: float) -> str:
    """A duration for a progress line: ``4m05s``, or ``2h07m`` from an hour on."""
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
