"""Loading saved policies: JSON (rules, thresholds) or npz (trees, online policies), never pickle."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from ..errors import PolicyError
from .base import Policy
from .compiled import FORMAT, FORMAT_VERSION
from .online import OnlinePolicy
from .rules import Rules
from .threshold import Threshold
from .trees import Forest, Tree

__all__ = ["load"]


def load(path: str | Path) -> Policy:
    """Load a policy written by ``save`` (online policies with what they learned);
    a corrupt or foreign file raises PolicyError."""
    path = Path(path)
    try:
        if path.suffix == ".npz":
            with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
                header = json.loads(str(archive["header"]))
                arrays = {name: archive[name] for name in archive.files if name != "header"}
        else:
            header, arrays = json.loads(path.read_text()), {}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise PolicyError(f"{path}: not a readable policy file ({error})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("version") != FORMAT_VERSION:
        raise PolicyError(f"{path}: not a fastroute policy file (format/version header missing or unknown)")
    kinds = {"rules": Rules, "threshold": Threshold, "tree": Tree, "forest": Forest, "online": OnlinePolicy}
    kind = header.get("kind")
    if kind not in kinds:
        raise PolicyError(f"{path}: unknown policy kind {kind!r}")
    try:
        return kinds[kind]._from_saved({**header, **arrays})
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, PolicyError):
            raise PolicyError(f"{path}: {error}") from None
        raise PolicyError(f"{path}: invalid {kind} policy ({type(error).__name__}: {error})") from None
