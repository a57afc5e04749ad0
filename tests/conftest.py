"""Shared fixtures for the whole suite.

Helpers and fakes live in tests/helpers.py (importable from every test folder,
since this directory is on sys.path): ``route_everything_as``, ``FakeClock``,
``Versioned``, ``ClientLoad`` and the native-thread counters.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The real routing logs (ASlib, RouteLLM GSM8K, RouterDC): <repo>/../shared/data,
#: or wherever FASTROUTE_SHARED_DATA points (e.g. from a git worktree).
SHARED_DATA = Path(os.environ.get("FASTROUTE_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real routing logs; skips (naming them) when absent, as on a fresh clone."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"needs the real routing logs (ASlib, RouteLLM GSM8K, RouterDC) in {SHARED_DATA}; "
            "see ../shared/data/README.md or set FASTROUTE_SHARED_DATA"
        )
    return SHARED_DATA
