"""Reading a config file into plain data, safely, whatever its bytes.

Every way a file can fail becomes a :class:`~fastroute.ConfigError` naming the
file and the problem: bytes that are not UTF-8, invalid YAML or TOML, nesting
deeper than the parser's recursion allows, integers of more digits than
Python converts, duplicate YAML keys (refused: which one wins is a guess),
and YAML aliases whose expansion would add more than
:data:`MAX_ALIAS_EXPANSION` nodes (a few hundred bytes of ``&a [*b, *b, ...]``
would otherwise grow into gigabytes). :func:`check_value_size` bounds a
single value (a warm-up input, factory arguments) once parsed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["MAX_ALIAS_EXPANSION", "MAX_VALUE_CHARS", "MAX_VALUE_ITEMS", "check_value_size", "read_config_file"]

#: Most nodes that YAML aliases may add to a file once expanded.
MAX_ALIAS_EXPANSION = 10_000
#: Most scalars (numbers, strings, booleans) in one value of a config file.
MAX_VALUE_ITEMS = 100_000
#: Most characters of all strings in one value of a config file.
MAX_VALUE_CHARS = 1 << 20


def read_config_file(path: Path) -> Any:
    """The data of a ``.yaml``, ``.yml`` or ``.toml`` file; ConfigError naming the problem."""
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".toml"):
        raise ConfigError(f"{path}: unsupported config type {suffix!r}; use .yaml, .yml or .toml")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8: byte {error.start} is {data[error.start]:#04x}") from None
    parse = _parse_toml if suffix == ".toml" else _parse_yaml
    try:
        return parse(text, path)
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to read") from None
    except ValueError as error:  # e.g. an integer of more digits than int() converts
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"{path}: a value cannot be read: {error}") from None


def check_value_size(value: Any, where: str) -> None:
    """ConfigError when ``value`` holds more than MAX_VALUE_ITEMS scalars or
    MAX_VALUE_CHARS characters (walked without recursion)."""
    items = chars = 0
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
            continue
        if isinstance(item, (list, tuple)):
            pending.extend(item)
            continue
        items += 1
        if isinstance(item, (str, bytes)):
            chars += len(item)
        if items > MAX_VALUE_ITEMS or chars > MAX_VALUE_CHARS:
            raise ConfigError(
                f"{where}: value too large (more than {MAX_VALUE_ITEMS} items or {MAX_VALUE_CHARS} characters); "
                "build large inputs in a factory instead"
            )


def _parse_toml(text: str, path: Path) -> Any:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from None


def _parse_yaml(text: str, path: Path) -> Any:
    try:
        import yaml
    except ImportError as error:
        raise ConfigError(f"YAML config files need the 'config' extra (pip install fastroute[config]): {error}") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, path)
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from None
    finally:
        loader.dispose()


def _check_nodes(root: Any, path: Path) -> None:
    """Refuse duplicate mapping keys, recursive aliases and alias expansion beyond the budget.

    An alias is the anchored node itself, so the composed document is a graph:
    its expanded size is counted over the graph once per node (post-order,
    without recursion), never by expanding it.
    """
    import yaml

    expanded: dict[int, int] = {}  # id(node) -> nodes it stands for once expanded
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            expanded[key] = 1 + sum(expanded[id(child)] for child in _children(node))
            continue
        if key in expanded:
            continue
        if key in on_path:
            raise ConfigError(f"{path}: line {node.start_mark.line + 1}: a YAML alias refers to itself")
        if isinstance(node, yaml.MappingNode):
            _check_unique_keys(node, path)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))
    added = expanded[id(root)] - len(expanded)
    if added > MAX_ALIAS_EXPANSION:
        raise ConfigError(
            f"{path}: YAML aliases expand to {expanded[id(root)]} nodes from {len(expanded)} written "
            f"(at most {MAX_ALIAS_EXPANSION} more are allowed)"
        )


def _children(node: Any) -> list[Any]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_unique_keys(node: Any, path: Path) -> None:
    import yaml

    seen: dict[tuple[str, str], int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        line, key = key_node.start_mark.line + 1, (key_node.tag, key_node.value)
        if key in seen:
            raise ConfigError(f"{path}: duplicate key {key_node.value!r} at line {line} (first at line {seen[key]})")
        seen[key] = line
