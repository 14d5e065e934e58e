"""The voxels of synthetic cases: tumour- and lesion-like shapes and the ways candidates fail.

:func:`glioma_case` and :func:`lung_case` draw one case from a random generator: its ground
truth, one candidate per algorithm (the reference's smooth level sets plus shared and
individual errors and discrete failures, see :mod:`qe_nb.data.synth`) and its images.
:func:`qe_nb.data.synth.synthetic_cohort` writes them to files.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["glioma_case", "lung_case"]


# --------------------------------------------------------------------------- shared kernels


def _axes_mm(shape, spacing, lo=(0, 0, 0)) -> list[np.ndarray]:
    return [((np.arange(n) + o) * s).astype(np.float32) for n, s, o in zip(shape, spacing, lo)]


def _smooth_noise(rng: np.random.Generator, axes: list[np.ndarray], length: float, n: int) -> np.ndarray:
    """``n`` fields of smooth, roughly unit-variance Gaussian noise on a grid given by its axes (mm).

    A coarse lattice of normal draws (one per ``length`` mm) interpolated with Gaussian
    weights, axis by axis (a tensor product: a few small matrix products, no per-voxel loop).
    """
    mats = []
    for c in axes:
        lo = float(c[0]) - 2 * length
        k = int(np.ceil((float(c[-1]) - float(c[0])) / length)) + 5
        if k > 4 * len(c):  # finer than the grid: one centre per voxel is enough
            k = len(c) + 4
        centers = lo + length * np.arange(k, dtype=np.float32)
        w = np.exp(-0.5 * ((c[:, None] - centers[None, :]) / length) ** 2)
        w /= np.sqrt((w**2).sum(axis=1, keepdims=True))
        mats.append(w.astype(np.float32))
    wz, wy, wx = mats
    coarse = rng.standard_normal((n, wz.shape[1], wy.shape[1], wx.shape[1]), dtype=np.float32)
    # plain einsum (no BLAS): single-threaded, so the same on every machine and thread count
    t = np.einsum("nijk,xk->nijx", coarse, wx)
    t = np.einsum("nijx,yj->niyx", t, wy)
    return np.einsum("niyx,zi->nzyx", t, wz)


def _shift(arr: np.ndarray, offset) -> np.ndarray:
    """Shift an array by whole voxels, filling with zeros (no wrap-around)."""
    out = np.zeros_like(arr)
    src, dst = [], []
    for n, o in zip(arr.shape, offset):
        o = int(o)
        if abs(o) >= n:
            return out
        src.append(slice(max(0, -o), n - max(0, o)))
        dst.append(slice(max(0, o), n - max(0, -o)))
    out[tuple(dst)] = arr[tuple(src)]
    return out


def _random_shift(rng: np.random.Generator, low: float, high: float, axes_scale=(1, 1, 1)) -> np.ndarray:
    """A whole-voxel offset whose length (in voxels, after ``axes_scale``) lies in [low, high]."""
    v = rng.normal(size=3) * np.asarray(axes_scale, dtype=float)
    v /= np.linalg.norm(v) or 1.0
    return np.round(v * rng.uniform(low, high)).astype(int)


def _box(center_vox, half_vox, shape) -> tuple[slice, ...]:
    return tuple(
        slice(max(0, int(np.floor(c - h))), min(n, int(np.ceil(c + h)) + 1))
        for c, h, n in zip(center_vox, half_vox, shape)
    )


def _local_axes(box, spacing, center_mm, center_vox) -> list[np.ndarray]:
    """Coordinates (mm) of a box's voxels relative to ``center_mm`` (volume centre at 0 mm)."""
    return [
        ((np.arange(b.start, b.stop) - v) * s - c).astype(np.float32)
        for b, s, c, v in zip(box, spacing, center_mm, center_vox)
    ]


def _ellipsoid_distance(axes, scale) -> np.ndarray:
    """Distance (mm) from the box's centre on axes stretched by ``scale`` (broadcast, no loop)."""
    z, y, x = (a / s for a, s in zip(axes, scale))
    return np.sqrt(z[:, None, None] ** 2 + y[None, :, None] ** 2 + x[None, None, :] ** 2)


def _hazard(difficulty: float, skill: np.ndarray) -> np.ndarray:
    """Per-algorithm propensity to fail on a case: 0 for easy cases and skilled algorithms."""
    return np.clip(difficulty * (1.5 - skill) * 1.5, 0.0, 1.0)


def _majority_subset(rng: np.random.Generator, n: int, difficulty: float) -> np.ndarray:
    """Which algorithms share a case-level failure: a majority becomes likelier with difficulty."""
    majority = n // 2 + 1
    if rng.random() < 0.35 + 0.5 * difficulty:
        k = int(rng.integers(majority, n + 1)) if n > 2 else 2
    else:
        k = int(rng.integers(1, majority)) if majority > 1 else 1
    k = min(k, n - 1)  # someone gets it right: complete consensus on an error is invisible
    chosen = np.zeros(n, dtype=bool)
    chosen[rng.choice(n, size=max(k, 1), replace=False)] = True
    return chosen


# --------------------------------------------------------------------------- glioma


def _glioma_labels(f_wt, f_tc, f_nec, depth, has_et: bool) -> np.ndarray:
    """Label map from level sets (mm); ``depth`` is the depth inside the brain (mm).

    The core keeps an edema rim of at least 2 mm, inside the tumour and inside the brain, and
    necrosis an enhancing rim of at least 1.5 mm.
    """
    wt = (f_wt < 0) & (depth > 0)
    tc = (f_tc < 0) & (f_wt < -2.0) & (depth > 2.0)
    nec = (f_nec < 0) & (f_tc < -1.5) & (f_wt < -3.5) & (depth > 3.5)
    lab = np.where(wt, np.uint8(2), np.uint8(0))
    lab[tc] = 4 if has_et else 1
    lab[nec] = 1
    return lab


def glioma_case(
    rng: np.random.Generator, shape: tuple[int, int, int], skill: np.ndarray, bias: np.ndarray, *, images: bool
) -> dict[str, Any]:
    """Draw one synthetic glioma (BraTS labels, MR images) case from ``rng``.

    Parameters
    ----------
    rng : numpy.random.Generator
        The case's own generator (seeded per case, so a case does not depend on the others).
    shape : tuple of 3 int
        The grid (z, y, x).
    skill, bias : ndarray, shape (n_algorithms,)
        Every algorithm's skill (0-1, higher fails less) and its systematic boundary offset
        (a habit of over- or under-segmenting).
    images : bool
        Also draw the images.

    Returns
    -------
    dict
        ``reference`` and ``candidates`` (uint8 label maps), ``images`` (modality -> int16),
        ``spacing``, ``origin``, ``difficulty`` and ``failures`` (per candidate, the failures
        injected into it).
    """
    n_alg = len(skill)
    spacing = (1.0, 1.0, 1.0)
    center = (np.asarray(shape) - 1) / 2.0
    origin = -center * np.asarray(spacing)
    difficulty = float(rng.beta(1.3, 2.0))

    # brain: a perturbed ellipsoid filling most of the box
    axes = _axes_mm(shape, spacing, lo=-center)
    semi = 0.42 * np.asarray(shape, dtype=float) * rng.uniform(0.92, 1.0, 3)
    rho = _ellipsoid_distance(axes, semi)
    wobble = _smooth_noise(rng, axes, 18.0, 1)[0]
    depth = (1.0 - rho - 0.04 * wobble) * float(semi.min())  # roughly mm inside the brain
    brain = depth > 0

    # tumour: three nested, lobulated level sets around an off-centre point
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    t_center = direction * semi * rng.uniform(0.0, 0.45)
    r_wt = max(float(semi.min() * rng.uniform(0.28, 0.5)), 8.0)
    r_tc = max(r_wt * rng.uniform(0.45, 0.75), 5.0)
    r_nec = max(r_tc - rng.uniform(3.0, 6.0), 0.3 * r_tc)
    has_et = rng.random() > 0.12
    has_nec = rng.random() > 0.08
    margin = 14.0
    half = (1.45 * r_wt + margin) / np.asarray(spacing)
    box = _box(t_center / spacing + center, half, shape)
    local = _local_axes(box, spacing, t_center, center)
    crop_shape = tuple(b.stop - b.start for b in box)
    brain_crop = brain[box]
    depth_crop = depth[box]
    stretch = rng.uniform(0.8, 1.2, 3)
    core_off = rng.normal(size=3) * 0.1 * r_wt
    nec_off = core_off + rng.normal(size=3) * 0.1 * r_tc
    d_wt = _ellipsoid_distance(local, stretch)
    d_tc = _ellipsoid_distance([a - o for a, o in zip(local, core_off)], stretch)
    d_nec = _ellipsoid_distance([a - o for a, o in zip(local, nec_off)], stretch)
    lobes = _smooth_noise(rng, local, max(4.0, 0.45 * r_wt), 3)
    f_wt = d_wt - r_wt * (1 + 0.22 * lobes[0])
    f_tc = d_tc - r_tc * (1 + 0.2 * lobes[1])
    f_nec = (d_nec - r_nec * (1 + 0.25 * lobes[2])) if has_nec else np.full(crop_shape, 1.0, np.float32)
    reference = np.zeros(shape, np.uint8)
    reference[box] = _glioma_labels(f_wt, f_tc, f_nec, depth_crop, has_et)

    # errors: shared by the ensemble (the fusion inherits them) and individual (disagreement)
    hazard = _hazard(difficulty, skill)
    # one boundary-noise field per algorithm (and one shared), scaled per structure
    noise = _smooth_noise(rng, local, 7.0, n_alg + 1)
    # edema borders are fuzzy, enhancing borders crisp: errors shrink towards the inside
    crisp = np.array([1.0, 0.6, 0.5])
    shared_sd = (0.3 + 2.0 * difficulty) * crisp
    shared_mean = rng.choice([-1.0, 1.0], 3) * difficulty * 2.0 * rng.uniform(0.6, 1.2, 3) * crisp
    indiv_sd = 0.2 + 3.0 * hazard
    failures: list[list[str]] = [[] for _ in range(n_alg)]
    mode = {
        "miss_enhancing": np.zeros(n_alg, bool),
        "confuse_necrosis_enhancing": np.zeros(n_alg, bool),
        "miss_core": np.zeros(n_alg, bool),
        "bleed": np.zeros(n_alg, bool),
        "shrink": np.zeros(n_alg, bool),
        "shift": np.zeros(n_alg, bool),
        "false_positive": np.zeros(n_alg, bool),
        "empty": np.zeros(n_alg, bool),
    }
    rates = {
        "miss_enhancing": 0.15, "confuse_necrosis_enhancing": 0.06, "miss_core": 0.06,
        "bleed": 0.15, "shrink": 0.1, "shift": 0.08, "false_positive": 0.2,
    }
    for key, rate in rates.items():
        mode[key] |= rng.random(n_alg) < rate * hazard
    mode["empty"] |= rng.random(n_alg) < 0.004 + 0.03 * hazard
    shared_fp = None
    if rng.random() < np.clip(2.0 * (difficulty - 0.3), 0.0, 0.85):
        key = rng.choice(
            ["miss_enhancing", "miss_core", "bleed", "shrink", "false_positive", "confuse_necrosis_enhancing"],
            p=[0.25, 0.05, 0.3, 0.2, 0.12, 0.08],
        )
        who = _majority_subset(rng, n_alg, difficulty)
        mode[str(key)] |= who
        if key == "false_positive":
            shared_fp = who
    if not has_et:
        mode["miss_enhancing"][:] = False
        mode["confuse_necrosis_enhancing"][:] = False

    fp_center = _far_point(rng, semi, t_center, r_wt)
    fp_radius = rng.uniform(3.0, 8.0)
    candidates = []
    for a in range(n_alg):
        offset = (bias[a] + rng.normal(0.0, 0.3 + 1.2 * hazard[a], 3)) * crisp + shared_mean
        g = [
            f + shared_sd[s] * noise[n_alg] + indiv_sd[a] * crisp[s] * noise[a] - offset[s]
            for s, f in enumerate((f_wt, f_tc, f_nec))
        ]
        if mode["bleed"][a]:
            g[0] = g[0] - rng.uniform(3.0, 9.0)
        if mode["shrink"][a]:
            g[0] = g[0] + rng.uniform(2.0, 5.0)
            g[1] = g[1] + rng.uniform(1.0, 3.0)
        lab = _glioma_labels(g[0], g[1], g[2], depth_crop, has_et)
        if mode["miss_enhancing"][a]:
            lab[lab == 4] = 1
        if mode["confuse_necrosis_enhancing"][a]:
            lab = np.choose(lab, [0, 4, 2, 3, 1]).astype(np.uint8)
        if mode["miss_core"][a]:
            lab[(lab == 1) | (lab == 4)] = 2
        if mode["shift"][a]:
            lab = _shift(lab, _random_shift(rng, 3.0, 8.0)) & np.where(brain_crop, 255, 0).astype(np.uint8)
        cand = np.zeros(shape, np.uint8)
        cand[box] = lab
        if mode["false_positive"][a]:
            if shared_fp is not None and shared_fp[a]:
                c, r = fp_center, fp_radius
            else:
                c, r = _far_point(rng, semi, t_center, r_wt), rng.uniform(3.0, 8.0)
            _paste_blob(rng, cand, c, r, center, spacing, brain, values=(2, 4))
        if mode["empty"][a]:
            cand[:] = 0
        candidates.append(cand)
        failures[a] = [k for k in mode if mode[k][a]]

    out = {
        "reference": reference,
        "candidates": candidates,
        "failures": failures,
        "difficulty": difficulty,
        "spacing": spacing,
        "origin": origin,
    }
    if images:
        out["images"] = _glioma_images(rng, axes, semi, brain, reference)
    return out


def _far_point(rng, semi, t_center, r_wt) -> np.ndarray:
    """A point inside the brain ellipsoid well away from the tumour."""
    best, best_d = None, -1.0
    for _ in range(8):
        u = rng.normal(size=3)
        u *= rng.uniform(0.2, 0.7) / np.linalg.norm(u)
        p = u * semi
        d = np.linalg.norm(p - t_center)
        if d > 1.3 * r_wt + 12:
            return p
        if d > best_d:
            best, best_d = p, d
    return best


def _paste_blob(rng, volume, c_mm, radius, center, spacing, mask, *, values) -> None:
    """Write a lobulated blob (outer value, inner value) into ``volume`` inside ``mask``."""
    half = (radius * 1.5 + 2) / np.asarray(spacing)
    box = _box(np.asarray(c_mm) / spacing + center, half, volume.shape)
    local = _local_axes(box, spacing, c_mm, center)
    d = _ellipsoid_distance(local, rng.uniform(0.8, 1.2, 3))
    lobes = _smooth_noise(rng, local, max(2.0, radius * 0.6), 1)[0]
    outer = (d < radius * (1 + 0.2 * lobes)) & mask[box]
    region = volume[box]
    region[outer & (region == 0)] = values[0]
    if len(values) > 1:
        region[(d < radius * 0.5 * (1 + 0.2 * lobes)) & outer] = values[1]


def _glioma_images(rng, axes, semi, brain, reference) -> dict[str, np.ndarray]:
    # tissue classes: 0 background, 1 brain, 2 CSF, 3 edema, 4 necrosis, 5 enhancing
    ventricles = _ellipsoid_distance(
        [a - o for a, o in zip(axes, (0.0, -0.05 * semi[1], 0.0))], semi * np.array([0.25, 0.35, 0.18])
    ) < 1.0
    cls = brain.astype(np.uint8)
    cls[ventricles & brain] = 2
    tumour = reference > 0
    cls[tumour] = np.array([0, 4, 3, 0, 5], np.uint8)[reference[tumour]]
    # skull-stripped like BraTS: the background is exactly 0, texture and noise only inside
    inside = np.flatnonzero(cls)
    texture = 45.0 * _smooth_noise(rng, axes, 6.0, 1)[0].ravel()[inside]
    cls_in = cls.ravel()[inside]
    table = {
        "t1": (0, 620, 250, 470, 300, 560),
        "t1c": (0, 640, 260, 490, 280, 980),
        "t2": (0, 420, 950, 760, 880, 600),
        "flair": (0, 460, 140, 880, 520, 720),
    }
    out = {}
    for name, values in table.items():
        vals = np.asarray(values, np.float32)[cls_in] + texture
        vals += 14.0 * rng.standard_normal(inside.size, dtype=np.float32)
        img = np.zeros(cls.shape, np.int16)
        img.ravel()[inside] = np.clip(vals, 0, 32767).astype(np.int16)
        out[name] = img
    return out


# --------------------------------------------------------------------------- lung


def lung_case(
    rng: np.random.Generator, shape: tuple[int, int, int], skill: np.ndarray, bias: np.ndarray, *, images: bool
) -> dict[str, Any]:
    """Draw one synthetic lung-lesion (CT) case from ``rng``.

    Parameters
    ----------
    rng : numpy.random.Generator
        The case's own generator (seeded per case, so a case does not depend on the others).
    shape : tuple of 3 int
        The grid (z, y, x).
    skill, bias : ndarray, shape (n_algorithms,)
        Every algorithm's skill (0-1, higher fails less) and its systematic boundary offset
        (a habit of over- or under-segmenting).
    images : bool
        Also draw the images.

    Returns
    -------
    dict
        ``reference`` and ``candidates`` (uint8 label maps), ``images`` (modality -> int16),
        ``spacing``, ``origin``, ``difficulty`` and ``failures`` (per candidate, the failures
        injected into it).
    """
    n_alg = len(skill)
    spacing = (rng.uniform(2.5, 5.0), rng.uniform(0.7, 0.9), 0.0)
    spacing = (spacing[0], spacing[1], spacing[1])
    center = (np.asarray(shape) - 1) / 2.0
    origin = -center * np.asarray(spacing)
    fov = np.asarray(shape) * np.asarray(spacing)
    difficulty = float(rng.beta(1.3, 2.0))
    axes = _axes_mm(shape, spacing, lo=-center)

    # body (an elliptic cylinder) and two lungs
    z, y, x = axes
    body = ((y[:, None] / (0.42 * fov[1])) ** 2 + (x[None, :] / (0.47 * fov[2])) ** 2) < 1.0
    body = np.broadcast_to(body, shape)
    lung_semi = np.array([0.42 * fov[0], 0.3 * fov[1], 0.17 * fov[2]]) * rng.uniform(0.9, 1.05, 3)
    lung_centers = [np.array([0.0, -0.02 * fov[1], s * 0.22 * fov[2]]) for s in (-1, 1)]
    wobble = _smooth_noise(rng, axes, 25.0, 1)[0]
    lungs = np.zeros(shape, bool)
    for lc in lung_centers:
        lungs |= _ellipsoid_distance([a - o for a, o in zip(axes, lc)], lung_semi) + 0.04 * wobble < 1.0

    n_les = int(rng.integers(2, 9))
    radii = np.exp(rng.uniform(np.log(3.0), np.log(16.0), n_les))
    centers = []
    for _ in range(n_les):
        lc = lung_centers[int(rng.integers(2))]
        u = rng.normal(size=3)
        u *= rng.uniform(0.0, 0.7) ** (1 / 3) / np.linalg.norm(u)
        centers.append(lc + u * lung_semi)
    faint = np.clip(difficulty * rng.uniform(0.3, 1.4, n_les) + 0.15 * (4.0 / radii), 0.0, 1.0)

    hazard = _hazard(difficulty, skill)
    # ground-glass borders are fuzzy: everyone under-segments the halo the annotators drew
    shared_rel = rng.normal(-0.12, 0.04 + 0.2 * difficulty)
    shared_sd = 0.1 + 0.2 * difficulty
    indiv_rel = bias * 0.15 + rng.normal(0.0, 0.05 + 0.4 * hazard)
    indiv_sd = 0.05 + 0.4 * hazard
    mode = {
        "miss_lesion": np.zeros(n_alg, bool),
        "shift": rng.random(n_alg) < 0.2 * hazard,
        "false_positive": rng.random(n_alg) < 0.4 * hazard,
        "empty": rng.random(n_alg) < 0.004 + 0.03 * hazard,
    }
    shared_fp = None
    if rng.random() < np.clip(2.0 * (difficulty - 0.35), 0.0, 0.8):
        shared_fp = _majority_subset(rng, n_alg, difficulty)
        mode["false_positive"] |= shared_fp

    reference = np.zeros(shape, np.uint8)
    candidates = [np.zeros(shape, np.uint8) for _ in range(n_alg)]
    for i in range(n_les):
        half = (radii[i] * 1.5 + 6.0) / np.asarray(spacing)
        box = _box(centers[i] / spacing + center, half, shape)
        local = _local_axes(box, spacing, centers[i], center)
        d = _ellipsoid_distance(local, rng.uniform(0.75, 1.25, 3))
        fields = _smooth_noise(rng, local, max(2.0, 0.5 * radii[i]), n_alg + 2)
        f = d - radii[i] * (1 + 0.25 * fields[0])
        inside = lungs[box]
        reference[box] |= ((f < 0) & inside).astype(np.uint8)
        missed = rng.random(n_alg) < np.clip(faint[i] * (1.5 - skill) - 0.15, 0.0, 0.9)
        mode["miss_lesion"] |= missed
        for a in range(n_alg):
            if missed[a]:
                continue
            g = f - radii[i] * (shared_rel + indiv_rel[a] + shared_sd * fields[1] + indiv_sd[a] * fields[2 + a])
            candidates[a][box] |= ((g < 0) & inside).astype(np.uint8)

    fp_center, fp_radius = _lung_point(rng, lung_centers, lung_semi), rng.uniform(3.0, 10.0)
    for a in range(n_alg):
        if mode["shift"][a]:
            candidates[a] = _shift(candidates[a], _random_shift(rng, 3.0, 8.0, (0.3, 1, 1))) & lungs.astype(np.uint8)
        if mode["false_positive"][a]:
            if shared_fp is not None and shared_fp[a]:
                c, r = fp_center, fp_radius
            else:
                c, r = _lung_point(rng, lung_centers, lung_semi), rng.uniform(3.0, 10.0)
            _paste_blob(rng, candidates[a], c, r, center, spacing, lungs, values=(1,))
        if mode["empty"][a]:
            candidates[a][:] = 0
    failures = [[k for k in mode if mode[k][a]] for a in range(n_alg)]

    out = {
        "reference": reference,
        "candidates": candidates,
        "failures": failures,
        "difficulty": difficulty,
        "spacing": spacing,
        "origin": origin,
    }
    if images:
        hu = np.where(body, np.float32(40.0), np.float32(-1000.0))
        hu[lungs] = -850.0
        hu[reference > 0] = rng.uniform(-600.0, -150.0)
        hu += 30.0 * wobble * body + rng.normal(0.0, 25.0, shape).astype(np.float32)
        out["images"] = {"ct": np.clip(hu, -1024, 3071).astype(np.int16)}
    return out


def _lung_point(rng, lung_centers, lung_semi) -> np.ndarray:
    lc = lung_centers[int(rng.integers(2))]
    u = rng.normal(size=3)
    u *= rng.uniform(0.0, 0.8) ** (1 / 3) / np.linalg.norm(u)
    return lc + u * lung_semi
