"""benchmarks/render.py: the README tables come from a run's JSON, ratios as the run printed them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def render():
    spec = importlib.util.spec_from_file_location("bench_render", ROOT / "benchmarks" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench(name: str, group: str, low: float, median: float, baseline: bool = False) -> dict:
    return {"name": name, "group": group, "extra_info": {"baseline": baseline}, "stats": {"min": low, "median": median}}


def test_tables_give_each_candidate_its_ratio_to_the_groups_baseline(render, tmp_path: Path) -> None:
    run = {"datetime": "2026-12-01", "machine_info": {"python_version": "3.11"}, "benchmarks": [
        bench("test_sklearn", "tree", 2e-3, 3e-3, baseline=True),
        bench("test_fastroute", "tree", 1e-5, 2e-5),
        bench("test_alone", "no baseline", 1e-6, 1e-6),
    ]}
    records = {"records": {"regret": {"UCB1": {"regret": 0.125, "pulls": 10}}}, "ratios": {}}
    (tmp_path / "run.json").write_text(json.dumps(run))
    (tmp_path / "records.json").write_text(json.dumps(records))
    text = render.render(tmp_path / "run.json", tmp_path / "records.json")
    assert "| test_fastroute | 10 us | 20 us | 200x (150x) |" in text
    assert "| test_sklearn | 2 ms | 3 ms | baseline |" in text
    assert "| test_alone | 1 us | 1 us |  () |" in text
    assert "| UCB1 | 0.125 | 10 |" in text


def test_write_replaces_only_the_results_section(render) -> None:
    readme = f"# Benchmarks\nprose\n{render.BEGIN}\nold tables\n{render.END}\nmore prose\n"
    assert render.replace_results(readme, "new\n") == f"# Benchmarks\nprose\n{render.BEGIN}\nnew\n{render.END}\nmore prose\n"
    with pytest.raises(SystemExit, match="no <!-- results:begin -->"):
        render.replace_results("# no markers\n", "new\n")
