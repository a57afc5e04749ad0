"""Each benchmark group's ratios to its baseline: what conftest.py prints and render.py tabulates."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

__all__ = ["group_ratios"]


def group_ratios(benchmarks: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per group, each candidate's ratio to the group's baseline.

    ``benchmarks`` are pytest-benchmark's JSON entries (``group``, ``name``,
    ``extra_info``, ``stats`` with ``min`` and ``median``). A ratio is the
    baseline's time over the candidate's (above 1: the candidate is faster).
    Groups without exactly one baseline are listed with ``None`` ratios.
    """
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for bench in benchmarks:
        groups[bench.get("group") or bench["name"]].append(bench)
    result = {}
    for group, members in groups.items():
        baselines = [b for b in members if b.get("extra_info", {}).get("baseline")]
        base = baselines[0] if len(baselines) == 1 else None
        rows = []
        for bench in members:
            row = {
                "name": bench["name"],
                "baseline": bench is base,
                "min": bench["stats"]["min"],
                "median": bench["stats"]["median"],
                "ratio_min": _ratio(base, bench, "min"),
                "ratio_median": _ratio(base, bench, "median"),
            }
            rows.append(row)
        result[group] = rows
    return result


def _ratio(base: dict[str, Any] | None, bench: dict[str, Any], stat: str) -> float | None:
    if base is None or bench is base:
        return None
    candidate = bench["stats"][stat]
    return base["stats"][stat] / candidate if candidate > 0 else math.inf
