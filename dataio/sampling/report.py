"""Text rendering of :class:`~dataio.sampling.quality.ShuffleStats` (aligned table or markdown)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from dataio.sampling.quality import ShuffleStats

__all__ = ["COLUMNS", "render_stats"]

#: (header, explanation) of each column, in order
COLUMNS: tuple[tuple[str, str], ...] = (
    ("mode", "shuffle mode (ideal = uniform permutation, the reference)"),
    ("labels/batch", "mean distinct labels per batch"),
    ("vs ideal", "distinct labels relative to an ideal shuffle"),
    ("entropy vs ideal", "mean label entropy per batch relative to an ideal shuffle"),
    ("pos corr", "correlation of storage position and read position"),
    ("shards/batch", "mean distinct shards touched per batch"),
    ("read/sample", "bytes fetched from storage per sample read, with the cache"),
    ("read ampl.", "read/sample over the mean stored sample size"),
)


def _num(value: float | None, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt)


def _bytes(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f} B"


def _rows(stats: Sequence[ShuffleStats]) -> list[list[str]]:
    rows = []
    if stats:
        ideal = stats[0].ideal_distinct_labels
        one = "-" if math.isnan(ideal) else "1.000"
        rows.append(["ideal", _num(ideal, ".1f"), one, one, "-", "-", "-", "-"])
    for s in stats:
        rows.append(
            [
                s.mode,
                _num(s.distinct_labels, ".1f"),
                _num(s.diversity_ratio, ".3f"),
                _num(s.entropy_ratio, ".3f"),
                _num(s.position_correlation, "+.3f"),
                _num(s.shards_per_batch, ".1f"),
                _bytes(s.bytes_per_sample),
                _num(s.read_amplification, ".2f"),
            ]
        )
    return rows


def render_stats(stats: Sequence[ShuffleStats], markdown: bool = False) -> str:
    """Render one row per mode, preceded by the ideal-shuffle reference row.

    Args:
        stats: Results of :func:`~dataio.sampling.quality.shuffle_stats` (same dataset, world size and
            batch size), one per mode.
        markdown: Emit a GitHub markdown table instead of an aligned text table.

    Returns:
        The table, without a trailing newline.
    """
    headers = [h for h, _ in COLUMNS]
    rows = _rows(stats)
    if markdown:
        rule = "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"
        lines = ["| " + " | ".join(headers) + " |", rule]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    fmt = [str.ljust] + [str.rjust] * (len(headers) - 1)
    lines = ["  ".join(f(h, w) for f, h, w in zip(fmt, headers, widths, strict=True))]
    lines += ["  ".join(f(c, w) for f, c, w in zip(fmt, row, widths, strict=True)) for row in rows]
    return "\n".join(lines)
