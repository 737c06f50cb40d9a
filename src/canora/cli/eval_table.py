"""The table ``canora eval`` prints: the scores a person reads first, one line per file in about 100 columns, whole
file names; every score (the source's too) is in the JSON it writes, and ``--wide`` prints them all."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: file names longer than this are shortened in the middle
NAME_WIDTH = 40


@dataclass(frozen=True)
class Column:
    """A column: its header, the score keys it shows (one, or converted/source side by side), and the format of each
    number (``pct``: a fraction shown in per cent)."""

    head: str
    keys: tuple[str, ...]
    digits: int = 2
    pct: bool = False

    def cell(self, row: dict[str, Any]) -> str:
        return "/".join(_number(row.get(k), self.digits, self.pct) for k in self.keys)


def _number(v: Any, digits: int, pct: bool) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return "-"
    return f"{100 * v:.{max(0, digits - 1)}f}" if pct else f"{v:.{digits}f}"


#: the default table (c/s: the conversion's value / the source's)
COLUMNS = (
    Column("F0 err ¢", ("f0_rmse_cents",), 0),
    Column("GPE h/p %", ("gpe_harvest", "gpe_praat"), 2, True),
    Column("V/UV %", ("f0_vuv_error_rate",), 2, True),
    Column("buzz c/s", ("periodicity_converted", "periodicity_source")),
    Column("HNR c/s dB", ("hnr_db_converted", "hnr_db_source"), 1),
    Column("tone>src dB", ("held_tone_over_source_db",), 1),
    Column("TP dBTP", ("true_peak_dbtp_converted",), 1),
)
SIMILARITY = (
    Column("sim c/s", ("similarity_converted", "similarity_source"), 3),
    Column("sim v c/s", ("similarity_voiced_converted", "similarity_voiced_source"), 3),
)
IDENTIFICATION = (Column("id tgt c/s %", ("id_target_converted", "id_target_source"), 1, True),
                  Column("id src %", ("id_source_converted",), 1, True))
TAIL = (Column("cycle err", ("mel_cycle_error",)), Column("RTF", ("real_time_factor",), 3))


def _short(name: str) -> str:
    if len(name) <= NAME_WIDTH:
        return name
    half = (NAME_WIDTH - 1) // 2
    return f"{name[:half]}…{name[-(NAME_WIDTH - 1 - half):]}"


def columns(keys: Sequence[str], wide: bool, similarity: bool, identification: bool = False) -> list[Column]:
    """The columns to print: every score key one by one (``wide``), else the default set (similarity and singer
    identification only when they were scored)."""
    if wide:
        return [Column(k, (k,), 3) for k in keys]
    return [*COLUMNS, *(SIMILARITY if similarity else ()), *(IDENTIFICATION if identification else ()), *TAIL]


def render(rows: list[dict[str, Any]], mean: dict[str, Any], cols: Sequence[Column]) -> str:
    """The table: a header, a line per row (``file``, then ``cols``), and the mean."""
    lines = [[_short(r["file"]), *(c.cell(r) for c in cols)] for r in rows]
    lines.append(["mean", *(c.cell(mean) for c in cols)])
    heads = ["file", *(c.head for c in cols)]
    widths = [max(len(h), *(len(ln[i]) for ln in lines)) for i, h in enumerate(heads)]
    out = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(heads, widths)))]
    out += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(ln, widths)))
            for ln in lines]
    return "\n".join(out)
