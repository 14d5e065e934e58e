"""The README's commands run as written (issue 14).

A fenced ``bash`` block of README.md preceded by the line ``<!-- readme-test -->`` is run here,
command by command, in a temporary folder, and each must exit 0. So that the test stays
quick, ``qe-nb demo`` without ``--cases`` is given ``--cases 12`` (the README's demo is the
68-case one; the commands after it only need its files), and lines starting with ``pip`` are
not run (the package is installed already). Continuation lines (``\\``) are joined; ``#``
comments and blank lines are skipped.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
MARK = "<!-- readme-test -->"

pytestmark = pytest.mark.slow


def marked_blocks(text: str) -> list[list[str]]:
    """The commands of every ``bash`` block right after a ``<!-- readme-test -->`` line.

    Examples
    --------
    >>> marked_blocks("x\\n<!-- readme-test -->\\n```bash\\na \\\\\\n  b\\n# no\\n\\nc\\n```\\n```bash\\nd\\n```")
    [['a b', 'c']]
    """
    blocks = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() != MARK:
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        if j >= len(lines) or not re.match(r"^```(bash|sh|console)\s*$", lines[j].strip()):
            raise AssertionError(f"README.md line {i + 1}: {MARK} must precede a ```bash block")
        commands, pending = [], ""
        for body in lines[j + 1:]:
            if body.strip().startswith("```"):
                break
            body = body.rstrip()
            if body.endswith("\\"):
                pending += body[:-1].strip() + " "
                continue
            command = (pending + body.strip()).strip()
            pending = ""
            if command and not command.startswith("#"):
                commands.append(command)
        blocks.append(commands)
    return blocks


def runnable(command: str) -> str | None:
    """The command as the test runs it (None: not run)."""
    parts = [c.strip() for c in command.split("&&")]
    parts = [p for p in parts if not p.startswith(("pip ", "python -m pip "))]
    out = []
    for part in parts:
        if part.startswith("qe-nb demo") and "--cases" not in part:
            part += " --cases 12 --jobs 1 --quiet"
        out.append(part)
    return " && ".join(out) or None


BLOCKS = marked_blocks(README.read_text(encoding="utf-8")) if README.is_file() else []


@pytest.mark.skipif(not BLOCKS, reason=f"no README block is marked with {MARK} yet")
def test_readme_blocks_run_in_order(tmp_path):
    """Every marked block, in README order, in one folder: as a reader runs them in one shell."""
    exe = shutil.which("qe-nb") or None
    env = {**os.environ, "MPLBACKEND": "Agg"}
    if exe is None:  # not on PATH: the module of this interpreter
        env["PATH"] = f"{tmp_path / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        (tmp_path / "bin").mkdir()
        shim = tmp_path / "bin" / "qe-nb"
        shim.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m qe_nb.cli \"$@\"\n")
        shim.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    for command in [c for block in BLOCKS for c in block]:
        command = runnable(command)
        if command is None:
            continue
        done = subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"README command failed ({done.returncode}): {command}\n{done.stderr[-2000:]}"


def test_marked_blocks_parse():
    assert marked_blocks(f"{MARK}\n```bash\nqe-nb sweep s.nc \\\n  --alphas -1,0\n```\n") == [
        ["qe-nb sweep s.nc --alphas -1,0"]]
    assert runnable("pip install '.[all]' && qe-nb demo --out d") == "qe-nb demo --out d --cases 12 --jobs 1 --quiet"
    assert runnable("pip install x") is None
    with pytest.raises(AssertionError, match="must precede a ```bash block"):
        marked_blocks(f"{MARK}\n```python\nx\n```\n")
