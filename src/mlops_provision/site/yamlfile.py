"""Read one YAML file of a site the safe way, keeping the line of every key.

The line index is only for messages (``file:line``); the values Ansible uses come from Ansible
(:mod:`mlops_provision.site.resolve`). Reading here first also guards Ansible: a file whose
aliases expand without bound (a "billion laughs" file) is refused in well under a second,
before anything walks the expanded data.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any

import yaml

#: The most nodes a file may expand to once its aliases are followed. A site's largest files
#: (long package or address lists) stay far below; a "billion laughs" file goes far above.
MAX_EXPANDED_NODES = 1_000_000

VAULT_HEADER = b"$ANSIBLE_VAULT;"


class VaultValue:
    """An inline ``!vault`` value; ``plaintext`` is set once decrypted."""

    __slots__ = ("ciphertext", "line", "plaintext")

    def __init__(self, ciphertext: str, line: int):
        self.ciphertext = ciphertext
        self.line = line
        self.plaintext: str | None = None

    def __repr__(self) -> str:
        return "VaultValue(<encrypted>)"


class LineDict(dict):
    """A YAML mapping that remembers the (1-based) line of each key, and how a value that YAML
    read as a boolean or a number was written (``texts``: ``on``, ``12.10``)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lines: dict[Any, int] = {}
        self.texts: dict[Any, str] = {}


class LineList(list):
    """A YAML sequence that remembers how an item YAML read as a boolean or a number was
    written (``texts``: index -> text)."""

    def __init__(self, *args: Any):
        super().__init__(*args)
        self.texts: dict[int, str] = {}


def line_of(mapping: Any, key: Any) -> int | None:
    return getattr(mapping, "lines", {}).get(key)


def text_of(container: Any, key: Any) -> str | None:
    """How the boolean or number at ``container[key]`` was written, when YAML resolved an
    unquoted word to it (``on`` -> True, ``12.10`` -> 12.1); None otherwise."""
    return getattr(container, "texts", {}).get(key)


#: Tags YAML gives an unquoted word that does not stay a string.
_RESOLVED_TAGS = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:float")


def _written(node: yaml.Node) -> str | None:
    if isinstance(node, yaml.ScalarNode) and node.style is None and node.tag in _RESOLVED_TAGS:
        return node.value
    return None


class YamlError(Exception):
    """The file cannot be read as YAML; ``line`` is where, when known."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


class _Loader(yaml.SafeLoader):
    def __init__(self, stream: str):
        super().__init__(stream)
        self.duplicates: list[tuple[str, int, int]] = []  # (key, line, first line)


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Iterator[LineDict]:
    data = LineDict()
    yield data
    seen: dict[tuple[str, str], int] = {}
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            ident, line = (key_node.tag, key_node.value), key_node.start_mark.line + 1
            if ident in seen:
                loader.duplicates.append((key_node.value, line, seen[ident]))
            seen[ident] = line
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                "found an unhashable key", key_node.start_mark)
        data[key] = loader.construct_object(value_node, deep=False)
        data.lines[key] = key_node.start_mark.line + 1
        text = _written(value_node)
        if text is not None:
            data.texts[key] = text


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> Iterator[LineList]:
    data = LineList()
    yield data
    data.extend(loader.construct_sequence(node))
    for i, item in enumerate(node.value):
        text = _written(item)
        if text is not None:
            data.texts[i] = text


def _construct_vault(loader: _Loader, node: yaml.Node) -> VaultValue:
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(
            None, None, "a !vault value must be a string (the vault text)", node.start_mark)
    return VaultValue(loader.construct_scalar(node), node.start_mark.line + 1)


def _construct_unsafe(loader: _Loader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return dict(loader.construct_mapping(node, deep=True))


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
_Loader.add_constructor("!vault", _construct_vault)
_Loader.add_constructor("!unsafe", _construct_unsafe)


def expanded_size(root: yaml.Node, limit: int = MAX_EXPANDED_NODES) -> int:
    """How many nodes ``root`` stands for once every alias is followed, counted without
    following them (each node once, memoized); stops counting above ``limit``. Raises
    :class:`YamlError` for an alias that contains itself."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            active.discard(key)
            sizes[key] = min(limit + 1, 1 + sum(sizes[id(c)] for c in children))
            continue
        if key in sizes:
            continue
        if key in active:
            raise YamlError("an alias refers to the node that contains it (a recursive alias)",
                            node.start_mark.line + 1)
        active.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in active:
                raise YamlError("an alias refers to the node that contains it (a recursive "
                                "alias)", child.start_mark.line + 1)
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def parse(text: str) -> tuple[Any, list[tuple[str, int, int]]]:
    """The data of a YAML document and its repeated keys (key, line, first line). Raises
    :class:`YamlError` for bad syntax or aliases that expand beyond :data:`MAX_EXPANDED_NODES`."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, []
        size = expanded_size(node)
        if size > MAX_EXPANDED_NODES:
            raise YamlError(f"its aliases (*name) expand to more than {MAX_EXPANDED_NODES:,} "
                            "values: expected a file whose anchors and aliases expand to a "
                            "bounded size (is this a \"billion laughs\" file?)")
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        at = f" at line {line}, column {mark.column + 1}" if mark else ""
        what = exc.problem or exc.context or "syntax error"
        raise YamlError(f"invalid YAML{at}: {what}", line) from None
    except yaml.YAMLError as exc:
        raise YamlError(f"invalid YAML: {exc}") from None
    except RecursionError:
        raise YamlError("invalid YAML: nested too deeply") from None
    finally:
        loader.dispose()
    return data, loader.duplicates


def is_vault_file(raw: bytes) -> bool:
    return raw.lstrip().startswith(VAULT_HEADER)


def read_bytes(path: Path) -> bytes:
    return path.read_bytes()
