"""Strip the notebooks under notebooks/ for committing, keeping only the outputs nbval checks.

Every output, execution count, per-cell execution metadata and saved widget state is removed,
except the text printed (``stdout`` stream outputs) by the checked cells -- those tagged
``nbval-check-output`` in their metadata (what readers do not see; JupyterLab's property
inspector shows the tags) or, in older notebooks, carrying a ``# NBVAL_CHECK_OUTPUT`` comment --
and their execution count: ``pytest --nbval-lax`` compares a
fresh run against exactly those (and skips the comparison for a cell without a count), so they
must stay in the file. Figures, HTML tables and widgets are never kept, so the files stay small and diffs
stay readable.

Usage::

    python tools/strip_notebooks.py                # strip notebooks/*.ipynb in place
    python tools/strip_notebooks.py a.ipynb b.ipynb
    python tools/strip_notebooks.py --check        # exit 1 if any notebook is not stripped

To refresh the checked outputs after a deliberate change: run the notebook top to bottom
(``jupyter nbconvert --to notebook --execute --inplace notebooks/01_quickstart.ipynb``), strip
it with this script, and review the diff of the printed numbers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

MARKER = "NBVAL_CHECK_OUTPUT"
TAG = "nbval-check-output"
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
_VOLATILE_CELL_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")


def is_checked(cell: nbformat.NotebookNode) -> bool:
    """True for a code cell whose output nbval compares.

    nbval 0.11 compares a cell tagged ``nbval-check-output`` in ``metadata.tags`` (the
    notebooks' way: the reader does not see it) or carrying a ``# NBVAL_CHECK_OUTPUT``
    comment line (still recognised).
    """
    if cell.cell_type != "code":
        return False
    tags = cell.get("metadata", {}).get("tags", [])
    if isinstance(tags, list) and TAG in tags:
        return True
    return any(line.strip().startswith("#") and MARKER in line for line in cell.source.splitlines())


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return a copy of ``nb`` with every output removed but the checked cells' printed text."""
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        for key in _VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type != "code":
            continue
        if is_checked(cell):
            cell.outputs = [out for out in cell.outputs if out.output_type == "stream" and out.name == "stdout"]
            # nbval compares only cells that were run: keep the count of a checked cell
            if not cell.outputs:
                cell.execution_count = None
        else:
            cell.outputs = []
            cell.execution_count = None
    nb.metadata.pop("widgets", None)
    if "language_info" in nb.metadata:
        nb.metadata["language_info"] = {"name": nb.metadata["language_info"].get("name", "python")}
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--check", action="store_true", help="report, do not write; exit 1 if unstripped")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(NOTEBOOKS.glob("*.ipynb"))
    dirty = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        clean = strip(nb)
        if clean != nb:
            dirty.append(path)
            if not args.check:
                nbformat.write(clean, path)
    for path in dirty:
        print(f"{'not stripped' if args.check else 'stripped'}: {path}")
    return 1 if (args.check and dirty) else 0


if __name__ == "__main__":
    sys.exit(main())
