"""Loading saved policies: JSON (rules, thresholds) or npz (trees, online policies), never pickle.

A policy file may come from anywhere, so everything about it is checked
before it is trusted: the JSON must be UTF-8 and nested no deeper than the
parser's recursion allows; each npz member must be stored uncompressed (as
``save`` writes it), hold no Python objects, and declare exactly as many
bytes as it stores, checked from its header before any data is read, so a
file never makes memory grow beyond its own size. Any problem is a
:class:`~fastroute.PolicyError` naming the file and what is wrong.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import IO

import numpy as np

from ..errors import PolicyError
from .base import Policy
from .linear import Linear
from .compiled import FORMAT, FORMAT_VERSION
from .online import OnlinePolicy
from .rules import Rules
from .threshold import Threshold
from .trees import Forest, Tree

__all__ = ["load"]

_KINDS = {"rules": Rules, "threshold": Threshold, "tree": Tree, "forest": Forest, "online": OnlinePolicy,
          "linear": Linear}
_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def load(path: str | Path) -> Policy:
    """Load a policy written by ``save`` (online policies with what they learned);
    a corrupt, foreign or hostile file raises PolicyError."""
    path = Path(path)
    try:
        if path.suffix == ".npz":
            arrays = _read_npz(path)
            header = json.loads(str(arrays.pop("header")))
        else:
            header, arrays = json.loads(path.read_bytes().decode("utf-8")), {}
    except RecursionError:
        raise PolicyError(f"{path}: not a readable policy file (nested too deeply)") from None
    except PolicyError as error:
        raise PolicyError(f"{path}: {error}") from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise PolicyError(f"{path}: not a readable policy file ({error})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("version") != FORMAT_VERSION:
        raise PolicyError(f"{path}: not a fastroute policy file (format/version header missing or unknown)")
    kind = header.get("kind")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise PolicyError(f"{path}: unknown policy kind {kind!r:.80}; expected one of {sorted(_KINDS)}")
    for field in ("models", "feature_names"):
        names = header.get(field)
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise PolicyError(f"{path}: {field} must be a list of names, got {names!r:.80}")
    try:
        return _KINDS[kind]._from_saved({**header, **arrays})
    except (KeyError, TypeError, ValueError, IndexError) as error:
        if isinstance(error, PolicyError):
            raise PolicyError(f"{path}: {error}") from None
        raise PolicyError(f"{path}: invalid {kind} policy ({type(error).__name__}: {error})") from None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every member of an npz archive, each checked from its header before its data is read."""
    arrays = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if info.compress_type != zipfile.ZIP_STORED:
                raise PolicyError(f"{name}: member is compressed; policy files are stored uncompressed, as save() writes them")
            with archive.open(info) as member:
                _check_member(member, name, info.file_size)
            with archive.open(info) as member:
                arrays[name] = np.lib.format.read_array(member, allow_pickle=False)
    return arrays


def _check_member(member: IO[bytes], name: str, stored: int) -> None:
    """The member's npy header declares a plain array of exactly the bytes it stores."""
    version = np.lib.format.read_magic(member)
    if version not in _NPY_HEADER_READERS:
        raise PolicyError(f"{name}: npy format version {version} is not read")
    shape, _, dtype = _NPY_HEADER_READERS[version](member)
    if dtype.hasobject:
        raise PolicyError(f"{name}: holds Python objects (dtype {dtype}); policy files hold plain arrays")
    declared = math.prod(shape) * dtype.itemsize
    available = stored - member.tell()
    if declared != available:
        raise PolicyError(f"{name}: declares {declared} bytes of data (shape {shape}, {dtype}) but stores {available}")
