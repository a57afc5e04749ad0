"""Corrupt, foreign and hostile policy files end in a PolicyError naming the problem (issue 9).

Each test here failed before the fix with a raw TypeError, AttributeError,
RecursionError or MemoryError, with memory growing by the size a file
declares, or with a policy that loaded and failed later in explain().
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fastroute
from fastroute import FEATURE_NAMES, PolicyError, Rule, Rules, Tree
from fastroute.decision import load


@pytest.fixture(scope="module")
def tree() -> Tree:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, len(FEATURE_NAMES))).astype(np.float32)
    outcomes = np.stack([features[:, 6] > 0, features[:, 6] <= 0], axis=1).astype(float)
    return Tree(max_depth=3).fit(features, outcomes, models=["a", "b"])


def saved_arrays(tree: Tree, tmp_path: Path) -> dict[str, np.ndarray]:
    tree.save(tmp_path / "tree.npz")
    with np.load(tmp_path / "tree.npz", allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def peak_memory_refusing(path: Path, problem: str) -> int:
    """Peak traced memory (bytes) while ``load(path)`` raises a PolicyError matching ``problem``."""
    tracemalloc.start()
    try:
        with pytest.raises(PolicyError, match=problem):
            load(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_an_npy_file_named_npz(tmp_path: Path) -> None:
    np.save(tmp_path / "policy.npy", np.zeros(4))
    (tmp_path / "policy.npy").rename(tmp_path / "policy.npz")
    with pytest.raises(PolicyError, match="policy.npz: not a readable policy file"):
        load(tmp_path / "policy.npz")


def test_a_member_declaring_4e9_values_is_refused_before_reading(tmp_path: Path, tree: Tree) -> None:
    arrays = saved_arrays(tree, tmp_path)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (4_000_000_000,)})
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            data = npy_bytes(array) if name != "values" else b"\x93NUMPY" + header.getvalue()[6:] + b"\0" * 64
            archive.writestr(f"{name}.npy", data)
    assert peak_memory_refusing(path, r"values: declares 32000000000 bytes") < 10_000_000


def test_a_compressed_member_is_refused_before_it_expands(tmp_path: Path, tree: Tree) -> None:
    """A few kilobytes of deflated zeros would otherwise become hundreds of megabytes."""
    arrays = saved_arrays(tree, tmp_path)
    arrays["values"] = np.zeros((1 << 22, 2))  # 64 MiB of zeros, ~65 KB compressed
    np.savez_compressed(tmp_path / "packed.npz", **arrays)
    assert (tmp_path / "packed.npz").stat().st_size < 200_000
    assert peak_memory_refusing(tmp_path / "packed.npz", "compressed") < 10_000_000


def test_a_pickled_member_is_refused(tmp_path: Path, tree: Tree) -> None:
    arrays = saved_arrays(tree, tmp_path)
    arrays["feature"] = np.array([{"x": 1}], dtype=object)
    np.savez(tmp_path / "pickled.npz", **arrays)
    with pytest.raises(PolicyError, match="feature"):
        load(tmp_path / "pickled.npz")


@pytest.mark.parametrize(
    "name,array,problem",
    [
        ("feature", lambda a: a.astype(np.float64) + 0.5, "feature: dtype float64"),
        ("threshold", lambda a: a.astype(str), "threshold: dtype <U"),
        ("left", lambda a: a.astype(np.complex128), "left: dtype complex128"),
        ("values", lambda a: a.ravel(), "values: shape"),
        ("tree_begin", lambda a: a.reshape(1, -1), "tree_begin: shape"),
    ],
)
def test_unexpected_dtypes_and_shapes_fail_at_load(tmp_path: Path, tree: Tree, name, array, problem) -> None:
    arrays = saved_arrays(tree, tmp_path)
    arrays[name] = array(arrays[name])
    np.savez(tmp_path / "odd.npz", **arrays)
    with pytest.raises(PolicyError, match=problem):
        load(tmp_path / "odd.npz")


def test_integer_valued_arrays_of_another_width_still_load(tmp_path: Path, tree: Tree) -> None:
    arrays = saved_arrays(tree, tmp_path)
    arrays["feature"] = arrays["feature"].astype(np.int16)
    arrays["threshold"] = arrays["threshold"].astype(np.float32)
    np.savez(tmp_path / "narrow.npz", **arrays)
    loaded = load(tmp_path / "narrow.npz")
    row = np.zeros(len(FEATURE_NAMES), np.float32)
    assert "path:" in loaded.explain(row)


def write_json(tmp_path: Path, body: object, name: str = "policy.json") -> Path:
    path = tmp_path / name
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return path


def rules_document(**changes: object) -> dict:
    document = {"format": "fastroute-policy", "version": 1, "kind": "rules", "rules": [[None, "", "m"]],
                "default": "m", "models": ["m"], "feature_names": list(FEATURE_NAMES)}
    return {**document, **changes}


def test_json_nested_100k_deep(tmp_path: Path) -> None:
    path = write_json(tmp_path, "[" * 100_000 + "]" * 100_000)
    with pytest.raises(PolicyError, match="nested too deeply"):
        load(path)


def test_a_kind_that_is_a_list(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"unknown policy kind \['rules'\]"):
        load(write_json(tmp_path, rules_document(kind=["rules"])))


def test_a_list_as_a_rules_when(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="rule 0: rule when must be a str"):
        load(write_json(tmp_path, rules_document(rules=[[None, ["x"], "m"]])))


@pytest.mark.parametrize("field,value", [("default", ["m"]), ("models", "m"), ("feature_names", 3), ("rules", {"a": 1})])
def test_fields_of_the_wrong_type(tmp_path: Path, field: str, value: object) -> None:
    with pytest.raises(PolicyError, match=field):
        load(write_json(tmp_path, rules_document(**{field: value})))


def test_a_json_policy_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_bytes(b'{"format": "\xff"}')
    with pytest.raises(PolicyError, match="not a readable policy file"):
        load(path)


def test_saved_policies_still_round_trip(tmp_path: Path, tree: Tree) -> None:
    tree.save(tmp_path / "tree.npz")
    row = np.random.default_rng(1).normal(size=len(FEATURE_NAMES)).astype(np.float32)
    assert load(tmp_path / "tree.npz").explain(row) == tree.explain(row)
    rules = Rules([Rule("image", "height > 5", "big"), {"when": "", "model": "small"}], default="small")
    rules.save(tmp_path / "rules.json")
    assert load(tmp_path / "rules.json").rules == rules.rules


def test_fit_without_scikit_learn_names_the_learn_extra() -> None:
    script = (
        "import sys; sys.modules['sklearn'] = None\n"
        "import numpy as np, fastroute\n"
        "try:\n"
        "    fastroute.Tree().fit(np.zeros((4, 3)), np.ones((4, 2)), models=['a', 'b'])\n"
        "except fastroute.PolicyError as error:\n"
        "    print('PolicyError:', error)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "PolicyError:" in result.stdout and "fastroute[learn]" in result.stdout, result.stdout + result.stderr
    assert fastroute.Forest  # the extra is only needed to fit, not to import
