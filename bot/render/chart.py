"""The usage chart: a PNG drawn with matplotlib's Agg backend (no display, no global pyplot state).

Bars per day — stacked domestic and international where ThingSpace splits them, days that stand
out in red — the plan's daily share as a dashed line, and the usual range (the middle half of the
days) shaded. :func:`render_usage_chart` returns the PNG's bytes; one chart renders in well under
300 ms (``tests/perf/test_chart_perf.py`` prints the figure). matplotlib is imported on first use,
so only the worker that draws pays for it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

__all__ = ["ChartSpec", "render_usage_chart"]

_MB = 1024 * 1024
_DOMESTIC = "#3b7dd8"
_INTERNATIONAL = "#f0a030"
_STANDOUT = "#d64541"
#: up to this many days one bar each; longer windows are drawn as filled steps
_BARS_UP_TO = 62


@dataclass(frozen=True)
class ChartSpec:
    title: str
    days: Sequence[date]
    #: bytes per day used at home (all of it when ThingSpace does not split)
    domestic: Sequence[int]
    international: Sequence[int] = ()
    #: the plan's allowance spread per day (bytes), when known
    plan_per_day: float | None = None
    #: (low, high) bytes of a usual day
    usual: tuple[float, float] = (0.0, 0.0)
    standouts: Sequence[date] = field(default_factory=tuple)


def _unit(peak: float) -> tuple[float, str]:
    if peak >= 1024 * _MB:
        return 1024 * _MB, "GB"
    if peak >= _MB:
        return _MB, "MB"
    return 1024, "KB"


def render_usage_chart(spec: ChartSpec, *, dpi: int = 100) -> bytes:
    """The chart of *spec* as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(spec.days)
    international = list(spec.international) or [0] * n
    totals = [d + i for d, i in zip(spec.domestic, international, strict=True)]
    peak = max([*totals, spec.plan_per_day or 0, spec.usual[1], 1.0])
    scale, unit = _unit(peak)
    fig = Figure(figsize=(8, 3.4), dpi=dpi)
    FigureCanvasAgg(fig)
    ax: Any = fig.add_subplot()
    xs = list(range(n))
    standouts = set(spec.standouts)
    home = [v / scale for v in spec.domestic]
    abroad = [v / scale for v in international]
    label = "domestic" if any(abroad) else "data"
    if n <= _BARS_UP_TO:
        colours = [_STANDOUT if day in standouts else _DOMESTIC for day in spec.days]
        ax.bar(xs, home, color=colours, width=0.8, label=label)
        if any(abroad):
            ax.bar(xs, abroad, bottom=home, color=_INTERNATIONAL, width=0.8, label="international")
    else:  # a long window: one filled step line per series draws in a fraction of the time
        edges = [x - 0.5 for x in xs] + [n - 0.5]
        ax.stairs(home, edges, fill=True, color=_DOMESTIC, label=label)
        if any(abroad):
            tops = [h + a for h, a in zip(home, abroad, strict=True)]
            ax.stairs(tops, edges, baseline=home, fill=True, color=_INTERNATIONAL, label="international")
        marked = [x for x, day in zip(xs, spec.days, strict=True) if day in standouts]
        if marked:
            ax.bar(marked, [home[x] + abroad[x] for x in marked], color=_STANDOUT, width=1.0)
    low, high = spec.usual
    if high > 0:
        ax.axhspan(low / scale, high / scale, color="#999999", alpha=0.18, label="usual range")
    if spec.plan_per_day:
        ax.axhline(
            spec.plan_per_day / scale, color="#333333", linestyle="--", linewidth=1, label="plan per day"
        )
    step = max(1, n // 10)
    ax.set_xticks(xs[::step])
    ax.set_xticklabels([f"{d:%d %b}" for d in spec.days][::step], fontsize=8)
    ax.set_ylabel(unit)
    ax.set_title(spec.title, fontsize=10)
    ax.margins(x=0.01)
    ax.legend(fontsize=7, loc="upper left", frameon=False)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
