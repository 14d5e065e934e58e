"""``data_manifest.yml``: the schema, resolving a data set, fetching it with checksums.

The manifest lists the data sets ``qe_nb`` knows by name. Each entry says what the data is
(description, licence, citation), how to get it (``kind``), how its files are laid out (patterns
for :func:`qe_nb.open_ensemble`) and which label scheme it uses:

``synthetic``
    ``generator`` parameters (kind, n_cases, n_algorithms, shape, seed) passed to
    :func:`qe_nb.synthetic_cohort`. Generated once into the cache, reused afterwards.
``remote``
    ``base_url`` and ``files`` (each a ``path`` in the cache, its ``sha256``, and optionally a
    ``url_path`` relative to ``base_url`` when the upstream name differs). Downloaded with pooch
    and verified; a file whose checksum does not match is deleted and reported.
``local``
    ``path`` to a folder, absolute or relative to the manifest file's folder.
``manual``
    Data behind a login: ``url`` and ``instructions``; fetching raises with the instructions.

Where things are found
----------------------
Manifest
    ``load_manifest(path)``; without a path, the ``QE_NB_MANIFEST`` environment variable; else
    ``data_manifest.yml`` at the root of the source tree (next to the ``qe_nb`` package, which is
    where an editable install or a checkout has it); else a copy shipped inside the package
    (``qe_nb/data_manifest.yml``, read through :mod:`importlib.resources`) when a build includes
    one.
Cache
    ``cache=``; else the ``QE_NB_CACHE`` environment variable; else ``pooch.os_cache("qe_nb")``
    (e.g. ``~/.cache/qe_nb`` on Linux). A data set lives in ``<cache>/<name>/``.
Mirror
    ``base_url=`` (or ``qe-nb fetch --base-url``) replaces one data set's ``base_url``; its files
    are then read from ``<base_url>/<path>``, i.e. laid out as in the cache. The
    ``QE_NB_DATA_URL`` environment variable names a mirror of *all* data sets, read as
    ``<QE_NB_DATA_URL>/<name>/<path>``. Serving the shared data folder (which holds
    ``brats-example/``) with ``python -m http.server`` and setting
    ``QE_NB_DATA_URL=http://127.0.0.1:PORT/`` therefore fetches ``brats-example`` from it.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import yaml

from qe_nb.core.labels import LabelScheme, resolve_labels
from qe_nb.exceptions import InputError, ManifestError, QeNbError

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "DatasetEntry",
    "Layout",
    "RemoteFile",
    "KINDS",
    "MANIFEST_ENV",
    "CACHE_ENV",
    "DATA_URL_ENV",
    "find_manifest",
    "parse_manifest",
    "load_manifest",
    "default_cache",
    "fetch_dataset",
    "open_dataset",
]

MANIFEST_ENV = "QE_NB_MANIFEST"
CACHE_ENV = "QE_NB_CACHE"
DATA_URL_ENV = "QE_NB_DATA_URL"
MANIFEST_NAME = "data_manifest.yml"
MANIFEST_VERSION = 1
KINDS = ("local", "manual", "remote", "synthetic")
GENERATOR_KINDS = ("glioma", "lung")

# Written last into a generated cohort: its presence means "complete, with these parameters".
_SYNTH_MARKER = ".qe_nb-dataset.json"

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_URL_RE = re.compile(r"^https?://[^\s/]+", re.IGNORECASE)

_TOP_KEYS = ("version", "datasets")
_COMMON_REQUIRED = ("name", "description", "licence", "citation", "kind", "labels")
_COMMON_OPTIONAL = ("homepage",)
_KIND_REQUIRED = {
    "synthetic": ("generator", "layout"),
    "remote": ("base_url", "files", "layout"),
    "local": ("path", "layout"),
    "manual": ("url", "instructions"),
}
_KIND_OPTIONAL = {"synthetic": (), "remote": (), "local": (), "manual": ("layout",)}
_GENERATOR_KEYS = ("kind", "n_cases", "n_algorithms", "shape", "seed")
_FILE_REQUIRED = ("path", "sha256")
_FILE_OPTIONAL = ("url_path",)
_LAYOUT_REQUIRED = ("masks",)
_LAYOUT_OPTIONAL = ("reference", "images")
_OPEN_ENSEMBLE_KEYS = ("masks", "reference", "images", "labels")

log = logging.getLogger("qe_nb")


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
    """One file of a ``remote`` data set: where it goes in the cache, where it comes from, its hash.

    Examples
    --------
    >>> RemoteFile("a/b.nii.gz", "0" * 64, "upstream/b.nii.gz").url_path
    'upstream/b.nii.gz'
    """

    path: str
    sha256: str
    url_path: str


@dataclass(frozen=True)
class DatasetEntry:
    """One validated entry of ``data_manifest.yml``.

    Attributes
    ----------
    name, description, licence, citation, kind : str
        As in the manifest; ``kind`` is one of ``"synthetic"``, ``"remote"``, ``"local"``,
        ``"manual"``.
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


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML silently keeps the last one)."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
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
    if mark is None:
        return ManifestError(f"{source} is not valid YAML: {problem}.")
    lines = text.splitlines()
    shown = lines[mark.line].rstrip() if 0 <= mark.line < len(lines) else ""
    return ManifestError(
        f"{source} is not valid YAML: {problem} at line {mark.line + 1}, column "
        f"{mark.column + 1}: {shown!r}."
    )


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
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, source) from None
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    return _validate(data, source=source, base_dir=base)


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _check_keys(mapping: Mapping, *, required: tuple, optional: tuple, where: str, extra_hint: str = "") -> None:
    allowed = set(required) | set(optional)
    for key in mapping:
        if key not in allowed:
            raise ManifestError(
                f"{where}: unknown key {key!r}; expected one of {sorted(allowed)}{extra_hint}."
            )
    for key in required:
        if key not in mapping:
            raise ManifestError(f"{where}: missing required key {key!r}.")


def _text(value: object, *, key: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ManifestError(f"{where}: `{key}` must be a non-empty string; got {value!r} ({_type_name(value)}).")
    return value.strip()


def _url(value: object, *, key: str, where: str) -> str:
    text = _text(value, key=key, where=where)
    if not _URL_RE.match(text):
        raise ManifestError(f"{where}: `{key}` must be an http:// or https:// URL; got {text!r}.")
    return text


def _int(value: object, *, key: str, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ManifestError(
            f"{where}: `{key}` must be an integer >= {minimum}; got {value!r} ({_type_name(value)})."
        )
    return value


def _relative_path(value: object, *, key: str, where: str) -> str:
    """A path that must stay inside the data set's folder: relative, '/'-separated, no '..'."""
    text = _text(value, key=key, where=where)
    pure = PurePosixPath(text)
    if (
        "\\" in text
        or pure.is_absolute()
        or re.match(r"^[A-Za-z]:", text)
        or ".." in pure.parts
        or text.startswith("~")
    ):
        raise ManifestError(
            f"{where}: `{key}` {text!r} must be a relative path inside the data set's folder "
            "('/'-separated, not absolute, no '..', no '~')."
        )
    return pure.as_posix()


def _pattern(value: object, *, key: str, where: str, needs: tuple[str, ...]) -> str:
    text = _relative_path(value, key=key, where=where)
    for placeholder in needs:
        if "{" + placeholder + "}" not in text:
            raise ManifestError(
                f"{where}: `{key}` pattern {text!r} lacks the placeholder {{{placeholder}}}; "
                f"it needs {', '.join('{' + p + '}' for p in needs)}."
            )
    return text


def _layout(value: object, *, where: str) -> Layout:
    where = f"{where}, `layout`"
    if not isinstance(value, Mapping):
        raise ManifestError(f"{where}: must be a mapping with `masks` (and optionally `reference`, `images`); got {_type_name(value)}.")
    _check_keys(value, required=_LAYOUT_REQUIRED, optional=_LAYOUT_OPTIONAL, where=where)
    masks = _pattern(value["masks"], key="masks", where=where, needs=("case", "algorithm"))
    reference = value.get("reference")
    if reference is not None:
        reference = _pattern(reference, key="reference", where=where, needs=("case",))
    images = value.get("images")
    if images is not None:
        images = _pattern(images, key="images", where=where, needs=("case", "modality"))
    return Layout(masks=masks, reference=reference, images=images)


def _generator(value: object, *, where: str) -> dict[str, Any]:
    where = f"{where}, `generator`"
    if not isinstance(value, Mapping):
        raise ManifestError(f"{where}: must be a mapping with keys {list(_GENERATOR_KEYS)}; got {_type_name(value)}.")
    _check_keys(value, required=_GENERATOR_KEYS, optional=(), where=where)
    kind = value["kind"]
    if kind not in GENERATOR_KINDS:
        raise ManifestError(f"{where}: unknown generator kind {kind!r}; expected one of {list(GENERATOR_KINDS)}.")
    shape = value["shape"]
    if shape is not None:
        if (
            not isinstance(shape, list)
            or len(shape) != 3
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape)
        ):
            raise ManifestError(
                f"{where}: `shape` must be null or a list of 3 positive integers (z, y, x); got {shape!r}."
            )
        shape = tuple(shape)
    return {
        "kind": kind,
        "n_cases": _int(value["n_cases"], key="n_cases", where=where, minimum=1),
        "n_algorithms": _int(value["n_algorithms"], key="n_algorithms", where=where, minimum=2),
        "shape": shape,
        "seed": _int(value["seed"], key="seed", where=where, minimum=0),
    }


def _files(value: object, *, where: str) -> tuple[RemoteFile, ...]:
    if not isinstance(value, list) or not value:
        raise ManifestError(f"{where}: `files` must be a non-empty list of mappings with `path` and `sha256`; got {value!r}.")
    out: list[RemoteFile] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        at = f"{where}, files[{i}]"
        if not isinstance(item, Mapping):
            raise ManifestError(f"{at}: must be a mapping with `path` and `sha256`; got {_type_name(item)}.")
        _check_keys(item, required=_FILE_REQUIRED, optional=_FILE_OPTIONAL, where=at)
        path = _relative_path(item["path"], key="path", where=at)
        at = f"{where}, file {path!r}"
        sha = item["sha256"]
        if not isinstance(sha, str) or not _SHA256_RE.match(sha.strip().lower()):
            shown = sha if isinstance(sha, str) else f"{sha!r} ({_type_name(sha)})"
            n = len(sha) if isinstance(sha, str) else 0
            raise ManifestError(
                f"{at}: `sha256` must be 64 hexadecimal characters; got {shown!r} ({n} characters)."
            )
        url_path = item.get("url_path")
        url_path = path if url_path is None else _relative_path(url_path, key="url_path", where=at)
        if path in seen:
            raise ManifestError(f"{at}: listed twice; each `path` must be unique.")
        seen.add(path)
        out.append(RemoteFile(path=path, sha256=sha.strip().lower(), url_path=url_path))
    return tuple(out)


def _labels(value: object, *, where: str) -> str | dict[str, Any]:
    if isinstance(value, Mapping):
        value = dict(value)
    elif not isinstance(value, str):
        raise ManifestError(
            f"{where}: `labels` must be a scheme name or a mapping structure name -> label "
            f"value(s); got {value!r} ({_type_name(value)})."
        )
    try:
        resolve_labels(value)
    except QeNbError as exc:
        raise ManifestError(f"{where}: `labels`: {exc}") from None
    return value


def _entry(item: object, index: int, *, source: str, base_dir: Path) -> DatasetEntry:
    if not isinstance(item, Mapping):
        raise ManifestError(f"{source}: datasets[{index}] must be a mapping; got {_type_name(item)}.")
    if "name" not in item:
        raise ManifestError(f"{source}: datasets[{index}]: missing required key 'name'.")
    name = item["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ManifestError(
            f"{source}: datasets[{index}]: `name` must be lower-case letters, digits, '.', '_' "
            f"or '-' (starting with a letter or digit); got {name!r}."
        )
    where = f"{source}: dataset {name!r}"
    if "kind" not in item:
        raise ManifestError(f"{where}: missing required key 'kind'; expected one of {list(KINDS)}.")
    kind = item["kind"]
    if kind not in KINDS:
        raise ManifestError(f"{where}: unknown kind {kind!r}; expected one of {list(KINDS)}.")
    required = _COMMON_REQUIRED + _KIND_REQUIRED[kind]
    optional = _COMMON_OPTIONAL + _KIND_OPTIONAL[kind]
    other = sorted({k for ks in _KIND_REQUIRED.values() for k in ks} - set(required) - set(optional))
    for key in item:
        if key in other:
            raise ManifestError(
                f"{where}: key {key!r} is not allowed for kind {kind!r}; "
                f"a {kind!r} entry takes {sorted(set(required) | set(optional))}."
            )
    _check_keys(item, required=required, optional=optional, where=where)

    fields: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "description": _text(item["description"], key="description", where=where),
        "licence": _text(item["licence"], key="licence", where=where),
        "citation": _text(item["citation"], key="citation", where=where),
        "labels": _labels(item["labels"], where=where),
        "source": source,
    }
    if item.get("homepage") is not None:
        fields["homepage"] = _url(item["homepage"], key="homepage", where=where)
    if item.get("layout") is not None or kind != "manual":
        fields["layout"] = _layout(item.get("layout"), where=where)
    if kind == "synthetic":
        fields["generator"] = _generator(item["generator"], where=where)
    elif kind == "remote":
        base_url = _url(item["base_url"], key="base_url", where=where)
        fields["base_url"] = base_url if base_url.endswith("/") else base_url + "/"
        fields["files"] = _files(item["files"], where=where)
    elif kind == "local":
        raw = _text(item["path"], key="path", where=where)
        path = Path(os.path.expandvars(os.path.expanduser(raw)))
        fields["path"] = Path(os.path.normpath(path if path.is_absolute() else base_dir / path))
    else:
        fields["url"] = _url(item["url"], key="url", where=where)
        fields["instructions"] = _text(item["instructions"], key="instructions", where=where)
    return DatasetEntry(**fields)


def _validate(data: object, *, source: str, base_dir: Path) -> dict[str, DatasetEntry]:
    if not isinstance(data, Mapping):
        raise ManifestError(
            f"{source} must be a mapping with keys {list(_TOP_KEYS)}; got {_type_name(data)}."
        )
    _check_keys(data, required=_TOP_KEYS, optional=(), where=source)
    version = data["version"]
    if version != MANIFEST_VERSION or isinstance(version, bool):
        raise ManifestError(
            f"{source}: unsupported `version` {version!r}; this qe_nb reads version {MANIFEST_VERSION}."
        )
    datasets = data["datasets"]
    if not isinstance(datasets, list):
        raise ManifestError(f"{source}: `datasets` must be a list of data set entries; got {_type_name(datasets)}.")
    entries: dict[str, DatasetEntry] = {}
    for i, item in enumerate(datasets):
        entry = _entry(item, i, source=source, base_dir=base_dir)
        if entry.name in entries:
            raise ManifestError(f"{source}: dataset {entry.name!r} is defined twice; names must be unique.")
        entries[entry.name] = entry
    return entries


def find_manifest() -> Path:
    """Locate ``data_manifest.yml`` (``QE_NB_MANIFEST``, the source tree, the packaged copy).

    Raises
    ------
    ManifestError
        When ``QE_NB_MANIFEST`` names a missing file, or no manifest is found anywhere.
    """
    env = os.environ.get(MANIFEST_ENV, "").strip()
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ManifestError(
                f"{MANIFEST_ENV} points at {str(path)!r}, which is not a file; set it to a "
                f"{MANIFEST_NAME} or unset it."
            )
        return path
    in_tree = Path(__file__).resolve().parents[2] / MANIFEST_NAME
    if in_tree.is_file():
        return in_tree
    packaged = importlib.resources.files("qe_nb") / MANIFEST_NAME
    if packaged.is_file():
        return Path(str(packaged))
    raise ManifestError(
        f"No {MANIFEST_NAME} found (looked at {MANIFEST_ENV}, {str(in_tree)!r} and the "
        f"package); pass `path=` or set {MANIFEST_ENV}."
    )


def load_manifest(path: str | os.PathLike | None = None) -> dict[str, DatasetEntry]:
    """Read and validate a data manifest.

    Parameters
    ----------
    path : path-like, optional
        The manifest file. Default: :func:`find_manifest` (``QE_NB_MANIFEST``, then the source
        tree's ``data_manifest.yml``, then a copy inside the package).

    Returns
    -------
    dict of str to DatasetEntry
        Data set name -> entry, in manifest order.

    Raises
    ------
    ManifestError
        Missing or unreadable file, or any schema violation (see :func:`parse_manifest`).

    Examples
    --------
    >>> entries = load_manifest()
    >>> entries["demo"].generator["n_cases"], entries["brats-example"].kind
    (68, 'remote')
    """
    file = find_manifest() if path is None else Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"`path`: no manifest at {str(file)!r}.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"`path`: cannot read the manifest {str(file)!r}: {exc}.") from None
    return parse_manifest(text, source=str(file), base_dir=file.resolve().parent)


def _entries(manifest: str | os.PathLike | Mapping[str, DatasetEntry] | None) -> Mapping[str, DatasetEntry]:
    if manifest is None or isinstance(manifest, (str, os.PathLike)):
        return load_manifest(manifest)
    if isinstance(manifest, Mapping) and all(isinstance(v, DatasetEntry) for v in manifest.values()):
        return manifest
    raise InputError(
        "`manifest` must be a path, the result of load_manifest() or None; "
        f"got {type(manifest).__name__}."
    )


def _entry_named(name: str, entries: Mapping[str, DatasetEntry]) -> DatasetEntry:
    if not isinstance(name, str) or name not in entries:
        raise ManifestError(f"Unknown data set {name!r}; expected one of {list(entries)}.")
    return entries[name]


# ---------------------------------------------------------------------------------------------
# fetching


def default_cache() -> Path:
    """The cache folder: ``QE_NB_CACHE`` if set, else ``pooch.os_cache("qe_nb")``."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("qe_nb"))


def fetch_dataset(
    name: str,
    *,
    manifest: str | os.PathLike | Mapping[str, DatasetEntry] | None = None,
    cache: str | os.PathLike | None = None,
    base_url: str | None = None,
    progress: bool = False,
) -> Path:
    """Make a data set available locally and return its root folder.

    Parameters
    ----------
    name : str
        A data set of the manifest (``"demo"``, ``"brats-example"``, ...).
    manifest : path-like or mapping, optional
        A manifest file, or the result of :func:`load_manifest`. Default: :func:`load_manifest`.
    cache : path-like, optional
        Cache folder; the data set goes to ``<cache>/<name>``. Default: :func:`default_cache`.
    base_url : str, optional
        ``remote`` only: fetch from ``<base_url>/<path>`` (a mirror laid out like the cache)
        instead of the manifest's ``base_url``. Without it, ``QE_NB_DATA_URL`` (if set) is a
        mirror of all data sets, read as ``<QE_NB_DATA_URL>/<name>/<path>``.
    progress : bool, default False
        Show download / generation progress bars.

    Returns
    -------
    pathlib.Path
        The data set's root folder (the ``root`` of :func:`qe_nb.open_ensemble`).

    Raises
    ------
    ManifestError
        Unknown name; a ``manual`` data set (the message holds the instructions); a missing
        ``local`` folder; a download that fails or whose sha256 differs from the manifest's
        (the message names the file, the expected and the actual hash; the download is deleted).

    Notes
    -----
    ``remote`` files already in the cache with the right checksum are not downloaded again; a
    cached file with a wrong checksum is downloaded again. A ``synthetic`` cohort is generated
    into a temporary folder beside its destination and moved into place when complete, with a
    marker recording the generator parameters; it is reused while they match.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> text = f'''
    ... version: 1
    ... datasets:
    ...   - {{name: here, description: d, licence: l, citation: c, kind: local,
    ...      path: "{folder}", layout: {{masks: "{{case}}/{{algorithm}}.nii.gz"}}, labels: binary}}
    ...   - {{name: gated, description: d, licence: l, citation: c, kind: manual,
    ...      url: "https://example.org/data", instructions: Register first.,
    ...      labels: binary}}
    ... '''
    >>> entries = parse_manifest(text)
    >>> fetch_dataset("here", manifest=entries) == Path(folder)
    True
    >>> os.rmdir(folder)
    >>> fetch_dataset("gated", manifest=entries)
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.ManifestError: data set 'gated' cannot be downloaded automatically (kind 'manual'): Register first. Source: https://example.org/data
    """
    entries = _entries(manifest)
    entry = _entry_named(name, entries)
    if base_url is not None and entry.kind != "remote":
        raise InputError(f"`base_url` applies to remote data sets only; {name!r} is {entry.kind!r}.")
    if entry.kind == "manual":
        raise ManifestError(
            f"data set {name!r} cannot be downloaded automatically (kind 'manual'): "
            f"{entry.instructions} Source: {entry.url}"
        )
    if entry.kind == "local":
        assert entry.path is not None
        if not entry.path.is_dir():
            raise ManifestError(
                f"data set {name!r} (kind 'local'): folder {str(entry.path)!r} does not exist; "
                f"fix `path` in {entry.source}."
            )
        return entry.path
    root = Path(cache).expanduser() if cache is not None else default_cache()
    if entry.kind == "synthetic":
        return _generate(entry, root, progress=progress)
    return _download(entry, root, base_url=base_url, progress=progress)


def _synthetic_cohort():
    # Imported lazily: synth pulls in scipy and the writer, only needed when generating.
    from qe_nb.data.synth import synthetic_cohort

    return synthetic_cohort


def _generate(entry: DatasetEntry, cache: Path, *, progress: bool) -> Path:
    assert entry.generator is not None
    dest = cache / entry.name
    params = dict(entry.generator)
    expected = {
        "name": entry.name,
        "generator": {**params, "shape": list(params["shape"]) if params["shape"] else None},
    }
    marker = dest / _SYNTH_MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text(encoding="utf-8")) == expected:
                return dest
        except (OSError, ValueError):
            pass  # unreadable marker: regenerate below
        log.info("qe_nb: regenerating %s: its parameters changed", dest)
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=cache))
    try:
        target = work / entry.name
        _synthetic_cohort()(
            target,
            kind=params["kind"],
            n_cases=params["n_cases"],
            n_algorithms=params["n_algorithms"],
            shape=params["shape"],
            seed=params["seed"],
            progress=progress,
        )
        target.mkdir(parents=True, exist_ok=True)
        (target / _SYNTH_MARKER).write_text(json.dumps(expected, indent=1), encoding="utf-8")
        if dest.exists():
            # A partial or outdated cohort: moved aside first so the swap is two renames.
            os.replace(dest, work / "outdated")
        os.replace(target, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


@contextlib.contextmanager
def _quiet_pooch() -> Iterator[None]:
    """pooch logs every download at INFO to stderr; the core never prints."""
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _file_url(entry: DatasetEntry, file: RemoteFile, base_url: str | None) -> str:
    if base_url is not None:
        return f"{base_url.rstrip('/')}/{file.path}"
    mirror = os.environ.get(DATA_URL_ENV, "").strip()
    if mirror:
        return f"{mirror.rstrip('/')}/{entry.name}/{file.path}"
    assert entry.base_url is not None
    return entry.base_url + file.url_path


_HASH_MISMATCH = re.compile(r"does not match the known hash.*?but got ([0-9a-fA-F]+)", re.S)


def _remove_new(target: Path, created: list[Path]) -> None:
    """Delete a failed download and the folders created for it (deepest first, if empty)."""
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    for folder in sorted(created, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _download(entry: DatasetEntry, cache: Path, *, base_url: str | None, progress: bool) -> Path:
    import pooch
    import requests

    if base_url is not None and not _URL_RE.match(base_url):
        raise InputError(f"`base_url` must be an http:// or https:// URL; got {base_url!r}.")
    dest = cache / entry.name
    for file in entry.files:
        target = dest / file.path
        url = _file_url(entry, file, base_url)
        created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
        try:
            with _quiet_pooch():
                pooch.retrieve(
                    url,
                    known_hash=f"sha256:{file.sha256}",
                    fname=target.name,
                    path=target.parent,
                    progressbar=progress,
                )
        except ValueError as exc:
            _remove_new(target, created)
            found = _HASH_MISMATCH.search(str(exc))
            if found is None:
                raise ManifestError(f"data set {entry.name!r}, file {file.path!r}: {exc}") from None
            raise ManifestError(
                f"data set {entry.name!r}: file {file.path!r} downloaded from {url} has sha256 "
                f"{found.group(1).lower()}, expected {file.sha256}; the download was deleted. "
                "The file changed upstream or the mirror is corrupt: check the source, or fix "
                f"the checksum in {entry.source} if the new file is trusted."
            ) from None
        except (requests.exceptions.RequestException, OSError) as exc:
            _remove_new(target, created)
            raise ManifestError(
                f"data set {entry.name!r}: could not download file {file.path!r} from {url}: "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}. Check the "
                f"network, or point {DATA_URL_ENV} / `base_url=` at a mirror."
            ) from None
    return dest


def open_dataset(
    name: str,
    *,
    manifest: str | os.PathLike | Mapping[str, DatasetEntry] | None = None,
    cache: str | os.PathLike | None = None,
    base_url: str | None = None,
    progress: bool = False,
    **kw: Any,
) -> xr.Dataset:
    """Fetch a data set and open it as an ensemble catalogue.

    Parameters
    ----------
    name, manifest, cache, base_url, progress
        As in :func:`fetch_dataset`.
    **kw
        Overrides of the entry's layout for :func:`qe_nb.open_ensemble`: ``masks``,
        ``reference``, ``images``, ``labels``.

    Returns
    -------
    xarray.Dataset
        The catalogue of :func:`qe_nb.open_ensemble` (case x algorithm paths), with the data
        set's ``name`` in ``attrs["dataset"]``.

    Raises
    ------
    ManifestError
        As :func:`fetch_dataset`.
    InputError
        For a keyword that :func:`qe_nb.open_ensemble` does not take.

    Examples
    --------
    >>> open_dataset("demo", mask="{case}/{algorithm}.nii.gz")
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.InputError: open_dataset() got unexpected keyword(s) ['mask']; the layout overrides are ['masks', 'reference', 'images', 'labels'].
    """
    unknown = sorted(set(kw) - set(_OPEN_ENSEMBLE_KEYS))
    if unknown:
        raise InputError(
            f"open_dataset() got unexpected keyword(s) {unknown}; the layout overrides are "
            f"{list(_OPEN_ENSEMBLE_KEYS)}."
        )
    entries = _entries(manifest)
    entry = _entry_named(name, entries)
    root = fetch_dataset(name, manifest=entries, cache=cache, base_url=base_url, progress=progress)
    args = {**entry.open_ensemble_kwargs(), **kw}
    from qe_nb.data.ensemble import open_ensemble

    ensemble = open_ensemble(root, **args)
    return ensemble.assign_attrs(dataset=name)
