"""The notebooks as committed: stripped, titled, narrated, and runnable on Binder.

Running them is nbval's job (``pytest --nbval-lax notebooks``); these tests check the files
themselves, fast and without a kernel.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
REQUIREMENTS = REPO / "binder" / "requirements.txt"
POSTBUILD = REPO / "binder" / "postBuild"
MARKER = "NBVAL_CHECK_OUTPUT"
TAG = "nbval-check-output"
# notebooks whose checked cells carry the tag, not the comment a reader would see
TAGGED = [p for p in NOTEBOOKS if p.name[:3] in {"01_", "02_", "03_", "04_", "05_", "07_"}
          or p.name == "triage_app.ipynb"]
MAX_BYTES = 1_000_000

# import name -> distribution name, where they differ
DISTRIBUTIONS = {
    "SimpleITK": "simpleitk",
    "yaml": "pyyaml",
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "PIL": "pillow",
    "cv2": "opencv-python",
    "IPython": "ipython",
    "surface_distance": "surface-distance",
    "dateutil": "python-dateutil",
}
OWN_PACKAGE = "qe_nb"


def _normalise(name: str) -> str:
    """PEP 503 name normalisation: ``SimpleITK`` and ``simple_itk`` both become comparable."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _strip_module():
    spec = importlib.util.spec_from_file_location("strip_notebooks", REPO / "tools" / "strip_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _python_source(cell_source: str) -> str:
    """The cell without IPython magics and shell escapes (``%matplotlib``, ``!pip``, ``%%time``)."""
    lines = cell_source.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
        return ""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in lines)


def notebook_imports(nb: nbformat.NotebookNode) -> set[str]:
    """Top-level modules imported by the code cells (absolute imports only)."""
    found: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tree = ast.parse(_python_source(cell.source))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def required_distributions(text: str) -> set[str]:
    """Distribution names in a requirements file, extras counted as names too (dask[distributed])."""
    names: set[str] = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", line)
        if match:
            names.add(_normalise(match.group(1)))
            names.update(_normalise(extra) for extra in (match.group(2) or "").split(",") if extra.strip())
    return names


def third_party(modules: set[str]) -> set[str]:
    return {m for m in modules if m not in sys.stdlib_module_names and m != OWN_PACKAGE}


# --------------------------------------------------------------------------- the helpers


def test_notebook_imports_skips_magics_and_relative_imports():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("%matplotlib inline\nimport numpy as np\nfrom qe_nb.ui import plots"),
        nbformat.v4.new_code_cell("!pip install foo\nfrom SimpleITK import ReadImage\nimport os.path"),
        nbformat.v4.new_code_cell("%%bash\nimport notpython"),
        nbformat.v4.new_markdown_cell("import markdown_is_not_code"),
    ])
    assert notebook_imports(nb) == {"numpy", "qe_nb", "SimpleITK", "os"}
    assert third_party(notebook_imports(nb)) == {"numpy", "SimpleITK"}


def test_required_distributions_reads_versions_extras_and_comments():
    text = "# comment\nSimpleITK>=2.2\ndask[distributed]>=2023.1  # scale-out\n\n-e .\npyyaml\n"
    assert required_distributions(text) == {"simpleitk", "dask", "distributed", "pyyaml"}


def test_is_checked_reads_the_nbval_tag_and_the_comment():
    """nbval 0.11 compares a cell tagged nbval-check-output or carrying # NBVAL_CHECK_OUTPUT."""
    from nbval.plugin import find_comment_markers, find_metadata_tags

    strip = _strip_module()
    tagged = nbformat.v4.new_code_cell("print(1)", metadata={"tags": ["hide-input", TAG]})
    commented = nbformat.v4.new_code_cell(f"# {MARKER}\nprint(1)")
    plain = nbformat.v4.new_code_cell("print(1)  # NBVAL is mentioned, not a marker", metadata={"tags": ["x"]})
    markdown = nbformat.v4.new_markdown_cell("text", metadata={"tags": [TAG]})
    assert strip.is_checked(tagged) and strip.is_checked(commented)
    assert not strip.is_checked(plain) and not strip.is_checked(markdown)
    # the same cells as nbval itself reads them
    assert dict(find_metadata_tags(tagged.metadata)) == {"check": True}
    assert dict(find_comment_markers(commented.source)) == {"check": True}
    assert not dict(find_metadata_tags(plain.metadata)) and not dict(find_comment_markers(plain.source))
    # strip keeps a tagged cell's printed text and count, like a commented one
    tagged.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n"),
                      nbformat.v4.new_output("display_data", data={"image/png": "AAAA"})]
    tagged.execution_count = 3
    nb = strip.strip(nbformat.v4.new_notebook(cells=[tagged]))
    assert [o.output_type for o in nb.cells[0].outputs] == ["stream"] and nb.cells[0].execution_count == 3


# --------------------------------------------------------------------------- the notebooks


@pytest.mark.parametrize("path", TAGGED, ids=lambda p: p.name)
def test_checked_cells_are_tagged_not_marked_in_the_source(path):
    """Readers see no test markers: the checked cells carry the nbval-check-output tag."""
    nb = _read(path)
    for i, cell in enumerate(nb.cells):
        assert MARKER not in cell.source, f"{path.name} cell {i}: move {MARKER} into the cell tag {TAG!r}"
    if path.name[:3] in {"01_", "02_", "03_", "04_", "07_"}:
        assert any(TAG in c.metadata.get("tags", []) for c in nb.cells), f"{path.name}: no checked cell"


def test_the_four_documented_notebooks_exist():
    names = {p.name for p in NOTEBOOKS}
    for expected in ("01_quickstart.ipynb", "02_calibrate_alpha.ipynb", "03_real_brats_case.ipynb",
                     "04_paper_tables.ipynb"):
        assert expected in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_valid_and_small(path):
    nb = _read(path)
    nbformat.validate(nb)
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size} bytes"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_starts_with_a_title_and_is_narrated(path):
    nb = _read(path)
    first = nb.cells[0]
    assert first.cell_type == "markdown", f"{path.name}: the first cell must be a markdown title"
    assert first.source.lstrip().startswith("# "), f"{path.name}: the first cell must start with '# Title'"
    words = sum(len(c.source.split()) for c in nb.cells if c.cell_type == "markdown")
    assert words >= 50, f"{path.name}: only {words} words of markdown narration"
    run = longest = 0
    for cell in nb.cells:
        run = run + 1 if cell.cell_type == "code" else 0
        longest = max(longest, run)
    assert longest <= 3, f"{path.name}: {longest} code cells in a row without narration"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_outputs_but_the_checked_text(path):
    """Only the printed text of checked cells (tag ``nbval-check-output``) is kept: nbval compares it."""
    nb = _read(path)
    strip = _strip_module()
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if strip.is_checked(cell):
            kinds = {(o.output_type, o.get("name")) for o in cell.outputs}
            assert kinds <= {("stream", "stdout")}, f"{path.name} cell {i}: checked outputs {kinds}"
        else:
            assert not cell.outputs, f"{path.name} cell {i} has outputs; run tools/strip_notebooks.py"
            assert cell.execution_count is None, f"{path.name} cell {i} has an execution count"
    assert "widgets" not in nb.metadata, f"{path.name} stores widget state"
    assert strip.strip(nb) == nb, f"{path.name} is not stripped; run python tools/strip_notebooks.py"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_checked_cells_hold_their_expected_output(path):
    """A checked cell without stored output (or count) would be skipped by nbval silently."""
    nb = _read(path)
    strip = _strip_module()
    checked = [c for c in nb.cells if strip.is_checked(c)]
    for cell in checked:
        assert cell.outputs and cell.execution_count is not None, (
            f"{path.name}: a checked ({TAG}) cell has no stored output; run the notebook and strip it"
        )
        text = "".join(o.text for o in cell.outputs)
        assert "/tmp" not in text and str(REPO) not in text, f"{path.name}: a checked output prints a path"
        assert "progress=True" not in cell.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_binder_requirements_name_every_import(path):
    required = required_distributions(REQUIREMENTS.read_text(encoding="utf-8"))
    imports = third_party(notebook_imports(_read(path)))
    missing = sorted(m for m in imports if _normalise(DISTRIBUTIONS.get(m, m)) not in required)
    assert not missing, f"{path.name} imports {missing}, which binder/requirements.txt does not name"


def test_binder_installs_the_package_and_the_notebook_extras():
    assert POSTBUILD.is_file()
    assert os.access(POSTBUILD, os.X_OK), "binder/postBuild must be executable"
    text = POSTBUILD.read_text(encoding="utf-8")
    assert text.startswith("#!"), "binder/postBuild needs a shebang line"
    assert re.search(r"pip install .*(-e )?\"?\.(\[[a-z,]*\])?\"?", text), "postBuild must pip install the checkout"
    required = required_distributions(REQUIREMENTS.read_text(encoding="utf-8"))
    assert {"jupyterlab", "ipywidgets", "matplotlib"} <= required


def test_calibration_notebook_displays_the_explorer_in_one_cell_and_stays_in_the_repo():
    """The browser test runs 02, moves the α slider and presses Calibrate: one clear app cell."""
    nb = _read(NOTEBOOK_DIR / "02_calibrate_alpha.ipynb")
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    app_cells = [s for s in code if "CalibrationExplorer(" in s]
    assert len(app_cells) == 1
    last_line = app_cells[0].strip().splitlines()[-1].strip()
    assert last_line == "app" or last_line.startswith("display("), "the explorer must be the cell's last expression"
    for source in code:
        assert "/work/" not in source and "../" not in source and "QE_NB_SHARED" not in source
    assert any("tempfile.mkdtemp" in s for s in code)


def test_real_case_notebook_finds_the_data_relative_to_itself_with_an_override():
    nb = _read(NOTEBOOK_DIR / "03_real_brats_case.ipynb")
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert 'os.environ.get("QE_NB_SHARED"' in source
    assert 'Path("..").resolve().parent / "shared"' in source
    assert "HAVE_DATA" in source


def test_continuous_qa_notebook_asserts_the_drift_in_its_checked_cells():
    """nbval compares printed text; the claims of notebook 07 are asserted, so a changed flag fails the run."""
    nb = _read(NOTEBOOK_DIR / "07_continuous_qa.ipynb")
    strip = _strip_module()
    checked = "\n".join(c.source for c in nb.cells if strip.is_checked(c))
    assert 'assert drift.attrs["flagged_members"] == [degraded]' in checked
    assert "assert model.drift(assessments[:20]).attrs[\"flagged_members\"] == []" in checked
    assert "assert flagged == [degraded]" in checked
