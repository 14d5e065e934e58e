"""One synthetic 2-D cell-microscopy case: many small objects, crowd-like annotators.

Used by :func:`qe_nb.data.synth.synthetic_cohort` with ``kind="cells"``. A case is a
``(y, x)`` field of 15-40 small elliptical cells (some in touching pairs), the ground truth,
one mask per annotator and a phase-contrast-like image. Annotators fail the way crowd workers
do (Gurari et al., WACV 2015), more often when their skill is low and the case hard:

- ``missed``: objects left out (faint cells are missed by most annotators together, so the
  fusion misses them too and no disagreement shows it);
- ``merged``: two neighbouring objects outlined as one (a bridge between them);
- ``loose``: outlines drawn 1-3 px too wide and ragged;
- ``offset``: the whole mask shifted by 2-6 px (an annotation tool's misplaced canvas);
- ``spurious``: blobs where there is no cell.

Masks hold 0 and 255 (like BU-BIL's), in pixels: no spacing (units ``"px"``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

__all__ = ["cells_case", "CELL_FAILURES", "FOREGROUND"]

CELL_FAILURES = ("missed", "merged", "loose", "offset", "spurious")
"""The failure modes an annotator's mask may carry (recorded per mask in cohort.json)."""
FOREGROUND = 255
"""The value of object pixels in the written masks (0 elsewhere)."""

_RADIUS = (3.5, 8.0)


def _objects(rng: np.random.Generator, shape: tuple[int, int], n: int) -> list[dict[str, Any]]:
    """Non-overlapping ellipses; about a third placed touching a previous one (merge bait)."""
    objects: list[dict[str, Any]] = []
    h, w = shape
    for _ in range(n * 20):
        if len(objects) >= n:
            break
        ry, rx = rng.uniform(*_RADIUS, 2)
        if objects and rng.random() < 0.35:
            other = objects[rng.integers(len(objects))]
            angle = rng.uniform(0, 2 * np.pi)
            gap = max(ry, rx) + max(other["r"]) + rng.uniform(1.0, 3.0)
            cy, cx = other["c"][0] + gap * np.sin(angle), other["c"][1] + gap * np.cos(angle)
        else:
            cy, cx = rng.uniform(10, h - 10), rng.uniform(10, w - 10)
        if not (10 <= cy <= h - 10 and 10 <= cx <= w - 10):
            continue
        if any(np.hypot(cy - o["c"][0], cx - o["c"][1]) < max(ry, rx) + max(o["r"]) + 1.0 for o in objects):
            continue
        objects.append({"c": (cy, cx), "r": (ry, rx), "theta": rng.uniform(0, np.pi)})
    return objects


def _draw(obj: dict[str, Any], yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    dy, dx = yy - obj["c"][0], xx - obj["c"][1]
    c, s = np.cos(obj["theta"]), np.sin(obj["theta"])
    u, v = c * dx + s * dy, -s * dx + c * dy
    return (u / obj["r"][1]) ** 2 + (v / obj["r"][0]) ** 2 <= 1.0


def _bridge(a: dict[str, Any], b: dict[str, Any], yy: np.ndarray, xx: np.ndarray, width: float) -> np.ndarray:
    """Pixels within ``width`` of the segment between two centres."""
    p, q = np.asarray(a["c"]), np.asarray(b["c"])
    d = q - p
    t = np.clip(((yy - p[0]) * d[0] + (xx - p[1]) * d[1]) / max(float(d @ d), 1e-9), 0.0, 1.0)
    return np.hypot(yy - (p[0] + t * d[0]), xx - (p[1] + t * d[1])) <= width


def _image(rng: np.random.Generator, truth: np.ndarray) -> np.ndarray:
    """Phase-contrast-like uint8 image: grainy background, dark cells with a bright halo."""
    base = ndimage.gaussian_filter(rng.normal(120.0, 18.0, truth.shape), 1.2)
    cell = ndimage.gaussian_filter(truth.astype(float), 1.0)
    halo = ndimage.gaussian_filter(ndimage.binary_dilation(truth, iterations=2) & ~truth, 1.5)
    return np.clip(base - 55.0 * cell + 70.0 * halo, 0, 255).astype(np.uint8)


def cells_case(
    rng: np.random.Generator,
    shape: tuple[int, int],
    skill: np.ndarray,
    bias: np.ndarray,
    *,
    images: bool = True,
) -> dict[str, Any]:
    """Generate one case: ground truth, one annotator mask per ``skill`` entry, an image.

    Parameters
    ----------
    rng : numpy.random.Generator
        The case's own generator (the case depends on nothing else).
    shape : tuple of 2 int
        The image size ``(y, x)``.
    skill : ndarray, dims (algorithm,)
        Annotator skill in (0, 1): higher fails less often.
    bias : ndarray, dims (algorithm,)
        Annotator style: positive draws loose (wide) outlines more often.
    images : bool, default True
        Also make the image.

    Returns
    -------
    dict
        ``reference`` and ``candidates`` (uint8 ``(y, x)``, 0 / 255), ``images``
        (``{"phase": uint8}`` or empty), ``spacing`` (1, 1), ``origin`` (0, 0),
        ``difficulty`` and ``failures`` (per candidate, the failure modes it carries).
    """
    n_alg = len(skill)
    difficulty = float(rng.beta(2.0, 3.0))
    n_objects = int(rng.integers(15, 41))
    objects = _objects(rng, shape, n_objects)
    yy, xx = np.indices(shape, dtype=np.float32)
    drawn = [_draw(o, yy, xx) for o in objects]
    truth = np.zeros(shape, bool)
    for mask in drawn:
        truth |= mask
    # faint cells: missed by most annotators together (the fusion misses them too)
    faint = rng.random(len(objects)) < 0.25 * difficulty
    pairs = [
        (i, j) for i in range(len(objects)) for j in range(i)
        if np.hypot(*(np.subtract(objects[i]["c"], objects[j]["c"])))
        < max(objects[i]["r"]) + max(objects[j]["r"]) + 4.0
    ]

    candidates, failures = [], []
    for a in range(n_alg):
        weak = (1.0 - float(skill[a])) * (0.4 + 1.2 * difficulty)
        mask = np.zeros(shape, bool)
        done: list[str] = []
        p_miss = 0.15 * weak
        missed = (rng.random(len(objects)) < p_miss) | (faint & (rng.random(len(objects)) < 0.8))
        for keep, obj_mask in zip(~missed, drawn):
            if keep:
                mask |= obj_mask
        if missed.any():
            done.append("missed")
        merged = [p for p in pairs if rng.random() < 0.8 * weak and not (missed[p[0]] or missed[p[1]])]
        for i, j in merged:
            mask |= _bridge(objects[i], objects[j], yy, xx, 0.6 * min(min(objects[i]["r"]), min(objects[j]["r"])))
        if merged:
            done.append("merged")
        if rng.random() < 0.9 * weak + 0.15 * max(float(bias[a]), 0.0):
            grown = ndimage.binary_dilation(mask, iterations=int(rng.integers(1, 4)))
            ragged = grown & ~mask & (rng.random(shape) < 0.6)
            mask = ndimage.binary_closing(mask | ragged) | mask
            done.append("loose")
        if rng.random() < 0.35 * weak:
            dy, dx = rng.integers(2, 7, 2) * rng.choice([-1, 1], 2)
            mask = np.roll(mask, (int(dy), int(dx)), axis=(0, 1))
            done.append("offset")
        if rng.random() < 0.5 * weak:
            for _ in range(int(rng.integers(1, 4))):
                blob = {"c": (rng.uniform(8, shape[0] - 8), rng.uniform(8, shape[1] - 8)),
                        "r": tuple(rng.uniform(*_RADIUS, 2)), "theta": rng.uniform(0, np.pi)}
                mask |= _draw(blob, yy, xx)
            done.append("spurious")
        candidates.append(mask.astype(np.uint8) * FOREGROUND)
        failures.append(done)

    return {
        "reference": truth.astype(np.uint8) * FOREGROUND,
        "candidates": candidates,
        "images": {"phase": _image(rng, truth)} if images else {},
        "spacing": (1.0, 1.0),
        "origin": (0.0, 0.0),
        "difficulty": difficulty,
        "failures": failures,
        "n_objects": len(objects),
    }
