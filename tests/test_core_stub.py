"""python/fastroute/_core.pyi describes the whole extension: same names, same members."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from fastroute import _core

STUB = Path(__file__).resolve().parents[1] / "python" / "fastroute" / "_core.pyi"


def _stub_names() -> tuple[set[str], dict[str, set[str]]]:
    tree = ast.parse(STUB.read_text())
    names: set[str] = set()
    members: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names.add(node.name)
            members[node.name] = {item.name for item in node.body if isinstance(item, ast.FunctionDef)}
        elif isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    names.discard("FloatRows")  # a stub-only alias
    return names, members


def _public(names: list[str]) -> set[str]:
    return {name for name in names if not name.startswith("_")} | ({"__init__"} & set(names))


def test_the_stub_names_every_name_of_the_extension_and_no_other() -> None:
    stubbed, _ = _stub_names()
    assert stubbed == {name for name in dir(_core) if not name.startswith("_")}


def test_the_stub_names_every_member_of_each_class() -> None:
    _, members = _stub_names()
    for name, stubbed in members.items():
        cls = getattr(_core, name)
        assert inspect.isclass(cls), name
        own = {member for member in vars(cls) if not member.startswith("_")}
        inherited = {m for base in cls.__mro__[1:] for m in vars(base) if not m.startswith("_")}
        assert own - inherited <= stubbed - {"__init__"} | inherited, (name, sorted(own - stubbed))
        assert stubbed - {"__init__", "__getitem__", "__await__"} <= own | inherited, (name, sorted(stubbed - own - inherited))
