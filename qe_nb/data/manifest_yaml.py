"""Reading a manifest's YAML safely: no duplicate keys, no alias bombs, merge keys allowed.

PyYAML's ``SafeLoader`` builds no arbitrary objects, but it silently keeps the last of two
equal keys, and it expands aliases when the document is used: a 500-byte "billion laughs"
text stands for hundreds of millions of values (27 s and 2 GB before a ``MemoryError``, issue
15). :func:`load_yaml` refuses both in milliseconds, on the composed nodes, before any Python
object is built. YAML merge keys (``<<: *base``) work, and the keys written beside them
override the merged ones.
"""

from __future__ import annotations

import reprlib
from typing import Any

import yaml

from qe_nb.exceptions import ManifestError

__all__ = ["load_yaml", "shown"]

_SHOWN = reprlib.Repr()
_SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlist, _SHOWN.maxdict, _SHOWN.maxlevel = 100, 100, 6, 6, 2
"""Values in messages are shortened: a message never expands an unbounded value."""


def shown(value: object) -> str:
    """A bounded repr of a value for a message (strings to 100 characters, lists to 6 items).

    Examples
    --------
    >>> shown("x" * 1000)[:12], len(shown("x" * 1000)) < 110
    ("'xxxxxxxxxxx", True)
    """
    return _SHOWN.repr(value)


_MAX_EXPANDED = 100_000
"""The most values (scalars, lists, mappings) a manifest may expand to through YAML aliases
when that is more than ten times what it holds as written: a 500-byte "billion laughs" text
expands to hundreds of millions; a real manifest with a few anchors to tens."""


class _ExpansionError(Exception):
    """A YAML document whose aliases expand it beyond the limit, or refer to themselves."""


def _check_expansion(root: yaml.Node) -> None:
    """Count the values a composed document expands to (aliases counted at every use).

    Shared nodes are counted once per use by memoising their expanded size, so the count takes
    time in proportion to the text, not to the expansion, and stops at the limit.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node, limit: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _ExpansionError(
                "a YAML alias refers to itself (a recursive structure), which a manifest cannot "
                "hold; remove the alias"
            )
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        for child in children:
            total += size(child, limit)
            if total > limit:
                break
        active.discard(key)
        sizes[key] = min(total, limit + 1)
        return sizes[key]

    written, stack, seen = 0, [root], set()
    while stack:  # the nodes as written, each once
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        written += 1
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend(part for pair in node.value for part in pair)
    limit = max(_MAX_EXPANDED, 10 * written)
    if size(root, limit) > limit:
        raise _ExpansionError(
            f"YAML aliases expand the manifest to more than {limit:,} values (it holds {written} as "
            "written); write the values out or use fewer aliases"
        )


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys and alias bombs; merge keys (``<<:``) work.

    PyYAML silently keeps the last of two equal keys; aliases are expanded when the document is
    used, so a short text can stand for a huge one (checked on the composed nodes, before any
    Python object is built).
    """

    def compose_document(self) -> yaml.Node:  # noqa: D102 - PyYAML's hook
        node = super().compose_document()
        if node is not None:
            _check_expansion(node)
        return node


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:  # `<<: *base`: merged keys may be overridden here
            continue
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {shown(key)}",
                key_node.start_mark,
            )
        seen[key] = True
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def _yaml_error(exc: yaml.YAMLError, text: str, source: str) -> ManifestError:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    problem = problem if len(problem) <= 200 else problem[:200] + "..."
    if mark is None:
        return ManifestError(f"{source} is not valid YAML: {problem}.")
    lines = text.splitlines()
    line = lines[mark.line].rstrip() if 0 <= mark.line < len(lines) else ""
    return ManifestError(
        f"{source} is not valid YAML: {problem} at line {mark.line + 1}, column "
        f"{mark.column + 1}: {shown(line)}."
    )


def load_yaml(text: str, *, source: str = "<string>") -> Any:
    """Parse YAML text with the checks above; every problem is a ManifestError naming ``source``.

    Examples
    --------
    >>> load_yaml("a: &x {k: 1}\\nb: {<<: *x, j: 2}")
    {'a': {'k': 1}, 'b': {'k': 1, 'j': 2}}
    >>> load_yaml("a: 1\\na: 2", source="m.yml")
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.ManifestError: m.yml is not valid YAML: found duplicate key 'a' at line 2, column 1: 'a: 2'.
    """
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, source) from None
    except _ExpansionError as exc:
        raise ManifestError(f"{source}: {exc}.") from None
    except RecursionError:
        raise ManifestError(f"{source}: the YAML is nested too deeply to read; flatten it.") from None
