"""The C++ core under sanitizers.

- The C++ tests (tests/cpp: queue, dispatcher, caller runs, stage histograms, result slot, model state, scorer, bandit,
  n-grams, linear scorer) are configured into
  ``build/cpp-tests/<variant>`` (incremental between runs) with
  ``FASTROUTE_CPP_TESTS=ON`` and run through ctest under ASan+UBSan and TSan.
- The extension itself is built with ASan+UBSan (float-cast-overflow included,
  which CMakeLists.txt adds to GCC's undefined group) into ``build/asan-extension``
  and the Python tests that drive untrusted input through it (the analyzer's
  files, arrays, text and fuzzing; policy loading; the dispatcher) run against
  it in a child pytest.

Any sanitizer report or failed check fails the test. Marked ``sanitizer``:
deselected by default, run by ``.ci/run`` (``pytest -m "slow or sanitizer"``).
Skipped only when cmake or a C++ compiler is not installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = {
    "asan-ubsan": "address,undefined",
    "tsan": "thread",
}
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
    "TSAN_OPTIONS": "halt_on_error=1:second_deadlock_stack=1",
}

pytestmark = [
    pytest.mark.sanitizer,
    pytest.mark.timeout(1800),  # whole sanitizer builds on 2 cores: far past the suite's 300 s default
    pytest.mark.skipif(
        shutil.which("cmake") is None or not (shutil.which("c++") or shutil.which("g++")),
        reason="cmake or a C++ compiler is not installed",
    ),
]


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1500)  # a cold build on 2 busy cores can pass 10 min
    if result.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_cpp_core_under_sanitizer(variant: str) -> None:
    build = ROOT / "build" / "cpp-tests" / variant
    build.mkdir(parents=True, exist_ok=True)
    _run(
        [
            "cmake",
            "-S", str(ROOT),
            "-B", str(build),
            "-DFASTROUTE_CPP_TESTS=ON",
            "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
            f"-DFASTROUTE_SANITIZE={VARIANTS[variant]}",
        ],
        cwd=ROOT,
    )
    targets = ["test_queue", "test_dispatcher", "test_scorer", "test_bandit", "test_ngrams", "test_model_state",
               "test_linear", "test_stage_histogram", "test_result", "test_caller_runs"]
    _run(["cmake", "--build", str(build), "-j2", "--target", *targets], cwd=ROOT)
    _run(["ctest", "--output-on-failure", "--timeout", "120"], cwd=build, env={**os.environ, **SANITIZER_ENV})


SANITIZED_SUITE = [
    "tests/analyzer/test_analyzer_arrays.py",
    "tests/analyzer/test_analyzer_batch.py",
    "tests/analyzer/test_analyzer_batch_threads.py",
    "tests/analyzer/test_analyzer_files.py",
    "tests/analyzer/test_analyzer_fuzz.py",
    "tests/analyzer/test_analyzer_text.py",
    "tests/analyzer/test_ngrams.py",
    "tests/decision/test_fast_path.py",
    "tests/decision/test_policies.py",
    "tests/decision/test_online.py",
    "tests/executors/test_dispatch.py",
    "tests/executors/test_result_handle.py",
    "tests/executors/test_awaiting.py",
    "tests/library/test_hold_count.py",
    "tests/executors/test_caller_runs.py",
    "tests/executors/test_native_enqueue.py",
]


@pytest.mark.skipif(os.environ.get("FASTROUTE_SANITIZED_CHILD") == "1", reason="already the sanitized run")
def test_python_suite_against_an_asan_ubsan_extension(tmp_path: Path) -> None:
    pybind11 = pytest.importorskip("pybind11", reason="building the extension by hand needs pybind11")
    build = ROOT / "build" / "asan-extension"
    _run(
        [
            "cmake", "-S", str(ROOT), "-B", str(build),
            "-DFASTROUTE_PYTHON=ON",
            "-DFASTROUTE_SANITIZE=address,undefined",
            "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
        ],
        cwd=ROOT,
    )
    _run(["cmake", "--build", str(build), "-j2", "--target", "_core"], cwd=ROOT)
    package = tmp_path / "fastroute"
    shutil.copytree(ROOT / "python" / "fastroute", package)
    for extension in build.glob("_core*.so"):
        shutil.copy2(extension, package)
    # libstdc++ preloaded with ASan, so that its C++ exception interceptors find their targets.
    preload = " ".join(_compiler_library(name) for name in ("libasan.so", "libstdc++.so"))
    env = {
        **os.environ,
        **SANITIZER_ENV,
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",  # CPython itself keeps memory at exit
        "LD_PRELOAD": preload,
        "PYTHONPATH": str(tmp_path),
        "FASTROUTE_SANITIZED_CHILD": "1",
        "FASTROUTE_STRESS_REQUESTS": "20000",
    }
    _run([sys.executable, "-c", CHILD, str(tmp_path), *SANITIZED_SUITE], cwd=ROOT, env=env)


def _compiler_library(name: str) -> str:
    return subprocess.run(["c++", f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()


# The child drops an editable install's import hook (it would win over
# PYTHONPATH), checks that it imports the sanitized extension, then runs pytest
# on every test of those files (``-m ""``: slow ones too).
CHILD = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__]
import fastroute._core
assert fastroute._core.__file__.startswith(sys.argv[1]), fastroute._core.__file__
import pytest
sys.exit(pytest.main(["-q", "-x", "-p", "no:cacheprovider", "-m", "", *sys.argv[2:]]))
"""
