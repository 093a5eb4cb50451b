"""Splitting a long reply into messages a provider accepts, its length counted in UTF-16 units.

Twilio (1600) and Telegram (4096) both count a message in UTF-16 code units, the unit their
offsets use (an emoji outside the BMP takes two), and both refuse a longer one. They differ in
where a piece may end, whether the break stays in it, and whether the pieces are numbered.
"""

from __future__ import annotations

from collections.abc import Sequence

# Where a piece may end, best tier first; within a tier the latest break in the window wins.
WORD_BREAKS: tuple[tuple[str, ...], ...] = (("\n",), (" ",))
SENTENCE_BREAKS: tuple[tuple[str, ...], ...] = (
    ("\n\n",),
    ("\n",),
    ("。", "！", "？", ". ", "! ", "? ", "；", "; "),
    ("，", ", ", " ", "、"),
)
NUMBER_ROOM = len("(99/99) ")  # what a numbered piece reserves for its "(i/n) "


def utf16_units(text: str) -> int:
    """Length as Twilio and Telegram count it: UTF-16 code units (an emoji takes two)."""
    return len(text.encode("utf-16-le")) // 2


def fit(text: str, limit: int) -> int:
    """How many characters of `text` fit in `limit` UTF-16 units."""
    used = 0
    for i, ch in enumerate(text):
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > limit:
            return i
    return len(text)


def split_units(
    text: str,
    limit: int,
    *,
    breaks: Sequence[Sequence[str]] = WORD_BREAKS,
    keep_breaks: bool = False,
    strip: bool = False,
    numbered: bool = False,
) -> list[str]:
    """Pieces of at most `limit` UTF-16 units, each cut at the best break in its window.

    A break counts only where the piece it ends fills at least half the window (a far-away break
    would leave a tiny piece); the tiers of `breaks` are tried in order, and without a break the
    window is cut where the limit falls. Pieces of whitespace only are left out.

    keep_breaks: the break ends the piece ("。" stays with its sentence); else it is dropped.
    strip: the text and every piece lose their surrounding whitespace.
    numbered: a text that fits is returned whole and unnumbered (even empty); otherwise each
        piece gets "(i/n) " in front, within the limit.
    """
    if strip:
        text = text.strip()
    if numbered:
        if utf16_units(text) <= limit:
            return [text]
        limit -= NUMBER_ROOM
    pieces: list[str] = []
    rest = text
    while utf16_units(rest) > limit:
        end = fit(rest, limit)
        cut = resume = end
        for separators in breaks:
            found = _last_break(rest[:end], separators, keep_breaks)
            if found is not None and found[0] >= end // 2:
                cut, resume = found
                break
        piece, rest = rest[:cut], rest[resume:]
        if strip:
            piece, rest = piece.strip(), rest.strip()
        pieces.append(piece)
    pieces.append(rest)
    pieces = [p for p in pieces if p.strip()]
    if numbered:
        return [f"({i}/{len(pieces)}) {p}" for i, p in enumerate(pieces, 1)]
    return pieces


def _last_break(window: str, separators: Sequence[str], keep: bool) -> tuple[int, int] | None:
    """(where the piece ends, where the rest starts) at the latest separator past the start."""
    best: tuple[int, int] | None = None
    for separator in separators:
        at = window.rfind(separator)
        if at > 0:
            after = at + len(separator)
            found = (after if keep else at, after)
            if best is None or found[0] > best[0]:
                best = found
    return best
