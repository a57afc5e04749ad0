"""Shared benchmark machinery: baselines and ratios, scenario records, quick mode.

Conventions (every benchmark file follows them):

- A candidate sits beside the baseline it must beat in one pytest-benchmark
  ``group``; the baseline sets ``benchmark.extra_info["baseline"] = True``.
  At the end of the run each group's candidates are printed with their ratio
  to the baseline (baseline time / candidate time: above 1 is faster), by
  min and by median round.
- Scenario figures that are not timings (regret, goodput, quality, p99) are
  reported with ``record(group, row, **figures)``; the scenario itself runs
  inside ``benchmark.pedantic(run, rounds=1, iterations=1)`` so that
  ``--benchmark-only`` runs it. Records are printed as one table per group.
- ``--quick`` (the ``quick`` fixture) asks every benchmark for a small fast
  version, and caps pytest-benchmark's rounds: ``.ci/run`` runs the whole
  suite that way so no benchmark can rot.
- ``--record-json PATH`` writes the records (and the ratios) as JSON;
  ``python3 benchmarks/render.py`` turns that and ``--benchmark-json`` output
  into the tables of benchmarks/README.md.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from ratios import group_ratios

#: What --quick caps pytest-benchmark's own calibration at (pedantic calls choose their own rounds).
QUICK_BENCHMARK_OPTIONS = {"benchmark_max_time": 0.05, "benchmark_min_rounds": 1, "benchmark_warmup": False}

_RECORDS_KEY = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fastroute benchmarks")
    group.addoption("--quick", action="store_true", help="small, fast versions of every benchmark (CI)")
    group.addoption("--record-json", metavar="PATH", help="write record() figures and group ratios to PATH")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.stash[_RECORDS_KEY] = defaultdict(dict)
    if config.getoption("--quick", default=False):
        for name, value in QUICK_BENCHMARK_OPTIONS.items():
            if hasattr(config.option, name):
                setattr(config.option, name, value)


@pytest.fixture(scope="session")
def quick(request: pytest.FixtureRequest) -> bool:
    """True under ``--quick``: run a small version of the benchmark (seconds)."""
    return bool(request.config.getoption("--quick"))


@pytest.fixture(scope="session")
def record(request: pytest.FixtureRequest):
    """``record(group, row, **figures)``: one row of a scenario's result table."""
    records = request.config.stash[_RECORDS_KEY]

    def add(group: str, row: str, **figures: Any) -> None:
        records[group].setdefault(row, {}).update(figures)

    return add


def _collected(config: pytest.Config) -> list[dict[str, Any]]:
    """The run's benchmarks as pytest-benchmark's JSON entries."""
    session = getattr(config, "_benchmarksession", None)
    if session is None:
        return []
    entries = []
    for bench in session.benchmarks:
        if not bench.has_error and bench.stats is not None and bench.stats.data:  # a failed test may leave none
            entries.append(bench.as_dict(include_data=False))
    return entries


def _seconds(value: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns"


def _times(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.3g}x"


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    ratios = group_ratios(_collected(config))
    records = config.stash.get(_RECORDS_KEY, {})
    write = terminalreporter.write_line
    if ratios:
        terminalreporter.section("ratios against each group's baseline (baseline time / candidate time)")
        for group, rows in sorted(ratios.items()):
            has_baseline = any(row["baseline"] for row in rows)
            write(f"{group}" + ("" if has_baseline else "  (no baseline set)"))
            for row in sorted(rows, key=lambda r: r["median"]):
                label = "baseline" if row["baseline"] else f"{_times(row['ratio_min'])} (median {_times(row['ratio_median'])})"
                write(f"    {row['name']:<60} min {_seconds(row['min']):>9}  {label}")
    if records:
        terminalreporter.section("scenario records")
        for group, rows in sorted(records.items()):
            columns = list(dict.fromkeys(name for figures in rows.values() for name in figures))
            write(f"{group}")
            write("    " + " | ".join(["row", *columns]))
            for row, figures in rows.items():
                write("    " + " | ".join([row, *(_figure(figures.get(c)) for c in columns)]))
    path = config.getoption("--record-json", default=None)
    if path:
        Path(path).write_text(json.dumps({"records": records, "ratios": ratios}, indent=1, default=str))


def _figure(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
