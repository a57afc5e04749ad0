"""Builds the C++ tests of the dispatch core (tests/cpp) under sanitizers and runs them.

Each variant is configured into ``build/cpp-tests/<variant>`` (incremental
between runs) with ``FASTROUTE_CPP_TESTS=ON`` and run through ctest: any
sanitizer report or failed check fails the test. Skipped only when cmake or a
C++ compiler is not installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "asan-ubsan": "address,undefined",
    "tsan": "thread",
}
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
    "TSAN_OPTIONS": "halt_on_error=1:second_deadlock_stack=1",
}

pytestmark = pytest.mark.skipif(
    shutil.which("cmake") is None or not (shutil.which("c++") or shutil.which("g++")),
    reason="cmake or a C++ compiler is not installed",
)


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=280)
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
    _run(["cmake", "--build", str(build), "-j2", "--target", "test_queue", "test_dispatcher", "test_scorer"], cwd=ROOT)
    _run(["ctest", "--output-on-failure", "--timeout", "120"], cwd=build, env={**os.environ, **SANITIZER_ENV})
