"""The per-case cache of a cohort run: one small file per finished case, so a run resumes.

Entries are keyed by the run's settings (a folder per settings key) and carry a
fingerprint of the case's files (path, size, modification and status-change times in ns,
device and inode): a changed file or setting is recomputed, never served stale. A torn or
foreign file counts as a miss.

Why the status-change time and the inode: a file rewritten in place with content of the same
size and its modification time put back (``touch -r``, ``os.utime``) keeps its size and mtime,
but the kernel moves its ctime (``utime`` itself sets it, and no call sets it back); a file
replaced by another one (``cp -p`` then ``mv``) has another inode. Hashing the content would
also catch these, at the price of reading every file on every resume (measured in issue 15:
see ``files_key``); the stat fingerprint costs one ``stat`` per file. Copying or restoring a
cohort (new inodes and ctimes) therefore recomputes it: the safe direction.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["settings_key", "files_key", "cache_path", "load_cached", "store_cached"]

_CACHE_FORMAT = 3
"""3: the files key also holds ctime, device and inode. 2: entries also hold ``volume``, ``pairwise``, ``staple_performance``, ``units`` and ``ndim``."""
_OPTIONAL = ("quality", "candidate_quality", "pairwise", "staple_performance")


def settings_key(settings: dict[str, Any]) -> str:
    """A short hash of a run's settings (the qe_nb version left out)."""
    blob = json.dumps({k: settings[k] for k in sorted(settings) if k != "qe_nb_version"}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def files_key(case_catalogue: xr.Dataset) -> str:
    """A fingerprint of a case's files: a changed file invalidates its cache entry.

    Each file contributes its path, size, mtime and ctime (ns), device and inode; paths that
    are not valid Unicode (non-UTF-8 folder names) are hashed as their bytes.
    """
    parts = []
    for name in ("mask", "reference"):
        if name in case_catalogue:
            for p in np.asarray(case_catalogue[name].values).ravel():
                p = str(p)
                try:
                    st = os.stat(p)
                    parts.append(f"{p}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_dev}:{st.st_ino}")
                except OSError:
                    parts.append(f"{p}:missing")
    return hashlib.sha256("|".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def cache_path(cache: Path, case: str, settings_key: str) -> Path:
    """Where a case's entry lives under the cache folder (any case id gives a safe name)."""
    safe = hashlib.sha256(case.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return cache / settings_key / f"{safe}.npz"


def load_cached(path: Path, case: str, files_key: str) -> dict[str, Any] | None:
    """A case's stored result, or None when absent, stale or unreadable (then it is recomputed)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["case"]) != case or str(z["files_key"]) != files_key or int(z["format"]) != _CACHE_FORMAT:
                return None
            out = {"case": case, "error": str(z["error"]), "similarity": z["similarity"], "volume": z["volume"],
                   "units": str(z["units"]), "ndim": int(z["ndim"])}
            out.update({name: z[name] if name in z else None for name in _OPTIONAL})
            out["warnings"] = [str(w) for w in z["warnings"]] if "warnings" in z else []
            return out
    except Exception:  # a torn or foreign file (BadZipFile, EOFError, OSError, ...) is a miss
        return None


def store_cached(path: Path, result: dict[str, Any], files_key: str) -> None:
    """Store a case's result at ``path``, atomically."""
    from qe_nb.data.images import atomic_write

    arrays = {
        "format": np.array(_CACHE_FORMAT),
        "case": np.array(result["case"]),
        "files_key": np.array(files_key),
        "error": np.array(result["error"]),
        "similarity": result["similarity"],
        "volume": result["volume"],
        "units": np.array(result["units"]),
        "ndim": np.array(result["ndim"]),
        "warnings": np.array([str(w) for w in result.get("warnings", ())], dtype=str),
    }
    for name in _OPTIONAL:
        if result[name] is not None:
            arrays[name] = result[name]
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole to a temporary file, fsynced, then renamed: a run killed mid-write
    # leaves either the old state or the complete file, never a torn one.
    with atomic_write(path, mode="wb") as fh:
        np.savez(fh, **arrays)
