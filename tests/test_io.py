"""Tests of qe_nb.data.images: reading, writing, geometry checks, resampling, atomic writes."""

from __future__ import annotations

import errno
import gzip
import io
import os
import stat

import numpy as np
import pytest
import SimpleITK as sitk

import qe_nb.data.images as qio
import qe_nb.data.nifti as qnifti
from qe_nb.data.images import (
    Geometry,
    atomic_path,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    check_geometry,
    image_suffix,
    read_image,
    resample_to,
    write_image,
)
from qe_nb.exceptions import GeometryError, ImageReadError, InputError

SHAPE = (8, 10, 12)
# An oblique direction (rotation about the scanner's z axis), in SimpleITK's (x, y, z) order.
_C, _S = np.cos(0.3), np.sin(0.3)
SITK_DIRECTION = (_C, -_S, 0.0, _S, _C, 0.0, 0.0, 0.0, 1.0)


def _sitk_write(array, path, *, spacing_xyz=(1.0, 1.0, 1.0), origin_xyz=(0.0, 0.0, 0.0),
                direction=None, compress=True):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing_xyz)
    image.SetOrigin(origin_xyz)
    if direction is not None:
        image.SetDirection(direction)
    sitk.WriteImage(image, str(path), compress)
    return image


@pytest.fixture
def label_map(rng) -> np.ndarray:
    return rng.choice(np.array([0, 1, 2, 4], np.uint8), size=SHAPE)


# --------------------------------------------------------------------------- Geometry


def test_geometry_defaults_and_coercion():
    g = Geometry(np.array([2, 3, 4]), spacing=[3, 1, 1])
    assert g.shape == (2, 3, 4) and all(isinstance(s, int) for s in g.shape)
    assert g.spacing == (3.0, 1.0, 1.0)
    assert g.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert Geometry.from_attrs(g.as_attrs(), (5, 2, 3, 4)) == g


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        # (2-D grids are valid since issue 13: a shape of one number is not)
        ({"shape": (2,)}, r"Geometry `shape` must hold 3 numbers .* got \(2,\)"),
        ({"shape": (2, 3, 4), "spacing": (1.0, 1.0)}, r"`spacing` must hold 3 numbers"),
        ({"shape": (2, 3, 4), "direction": (1.0, 0.0)}, r"`direction` must hold 9 numbers"),
        ({"shape": (2, 3, 4), "origin": "abc"}, r"`origin` must hold 3 numbers .* got 'abc'"),
        ({"shape": (2, -3, 4)}, r"`shape` must be non-negative; got \(2, -3, 4\)"),
        ({"shape": (2, 3, 4), "spacing": (1.0, 0.0, 1.0)}, r"`spacing` must be positive and finite"),
        ({"shape": (2, 3, 4), "spacing": (1.0, np.nan, 1.0)}, r"`spacing` must be positive and finite"),
    ],
)
def test_geometry_rejects_bad_fields(kwargs, match):
    with pytest.raises(InputError, match=match):
        Geometry(**kwargs)


def test_geometry_from_attrs_needs_spacing():
    with pytest.raises(InputError, match=r"attrs must hold `spacing`.*got keys \['case'\]"):
        Geometry.from_attrs({"case": "c1"}, (2, 3, 4))


# --------------------------------------------------------------------------- reading


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_read_image_matches_simpleitk_geometry(tmp_path, label_map, suffix):
    """Our (z, y, x) geometry is SimpleITK's (x, y, z) one reversed, on every format."""
    path = tmp_path / f"a{suffix}"
    image = _sitk_write(label_map, path, spacing_xyz=(0.5, 0.8, 3.0), origin_xyz=(10.0, -20.0, 30.0),
                        direction=SITK_DIRECTION)
    array, g = read_image(path)
    np.testing.assert_array_equal(array, label_map)
    assert g.shape == SHAPE
    assert g.spacing == pytest.approx((3.0, 0.8, 0.5))
    assert g.origin == pytest.approx((30.0, -20.0, 10.0))
    # point_zyx = origin + D_zyx @ (index_zyx * spacing) reproduces SimpleITK's physical points
    d = np.asarray(g.direction).reshape(3, 3)
    for index_xyz in [(0, 0, 0), (11, 9, 7), (3, 5, 2)]:
        expected = np.asarray(image.TransformIndexToPhysicalPoint(index_xyz))[::-1]
        got = np.asarray(g.origin) + d @ (np.asarray(index_xyz[::-1]) * np.asarray(g.spacing))
        np.testing.assert_allclose(got, expected, atol=1e-9)


def _sitk_reference(path):
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), qio.geometry_of(image)


def _nifti_variant(path, target, *, big_endian=False, slope=None):
    """Rewrite a .nii written by SimpleITK as a big-endian and/or scaled .nii.gz."""
    data = bytearray(path.read_bytes())
    if slope is not None:
        data[112:116] = np.float32(slope).tobytes()
    if big_endian:
        header = np.frombuffer(bytes(data[:348]), np.uint8).copy()
        # Swap every numeric header field of NIfTI-1 to big-endian, by its layout.
        layout = [(0, 4, 1), (32, 4, 1), (36, 2, 1), (40, 2, 8), (56, 4, 3), (68, 2, 4),
                  (76, 4, 8), (108, 4, 3), (120, 2, 1), (123, 0, 0), (124, 4, 4),
                  (252, 2, 2), (256, 4, 9), (280, 4, 12)]
        for start, size, count in layout:
            for k in range(count):
                a = start + k * size
                header[a:a + size] = header[a:a + size][::-1]
        vox_offset = int(np.frombuffer(bytes(data[108:112]), "<f4")[0])
        datatype = int(np.frombuffer(bytes(data[70:72]), "<i2")[0])
        dtype = np.dtype(qnifti._NIFTI_INTEGERS[datatype][0])
        voxels = np.frombuffer(bytes(data[vox_offset:]), dtype.newbyteorder("<"))
        data = bytearray(header.tobytes()) + data[348:vox_offset] + voxels.astype(dtype.newbyteorder(">")).tobytes()
    target.write_bytes(gzip.compress(bytes(data)))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32,
                                   np.uint64, np.int64])
@pytest.mark.parametrize("variant", ["plain", "big-endian", "slope-1", "slope-2"])
def test_read_image_in_memory_path_equals_simpleitk(tmp_path, rng, dtype, variant):
    """Integer NIfTI label maps are decompressed and viewed in memory; the voxels and grid
    equal SimpleITK's reading of the same file, and files it does not take (scaled voxels)
    still read as SimpleITK reads them."""
    info = np.iinfo(dtype)
    array = rng.integers(max(info.min, -1000), min(info.max, 1000), size=SHAPE, endpoint=True).astype(dtype)
    plain = tmp_path / "a.nii"
    _sitk_write(array, plain, spacing_xyz=(0.5, 0.8, 3.0), origin_xyz=(10.0, -20.0, 30.0),
                direction=SITK_DIRECTION, compress=False)
    target = tmp_path / "b.nii.gz"
    _nifti_variant(plain, target, big_endian=variant == "big-endian",
                   slope={"slope-1": 1.0, "slope-2": 2.0}.get(variant))
    expected, expected_geometry = _sitk_reference(target)
    got, geometry = qio.read_image_view(target)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == expected.dtype
    assert geometry == expected_geometry
    # The in-memory view is taken for unscaled integers (a big-endian one is converted to a
    # native copy); scaled files go to SimpleITK.
    if variant != "big-endian":
        assert got.flags.writeable == (variant == "slope-2")
    public, _ = read_image(target)
    assert public.flags.writeable
    np.testing.assert_array_equal(public, expected)


def test_read_image_in_memory_grid_prints_as_simpleitks(tmp_path):
    """The in-memory path takes its grid from SimpleITK's header-only read, which gives -0.0
    where sitk.ReadImage gives 0.0; the grid (printed in geometry errors, stored in attrs)
    must print the same either way."""
    path = tmp_path / "a.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((3, 4, 5), np.uint8)), str(path))
    got, geometry = qio.read_image_view(path)
    assert not got.flags.writeable  # the in-memory path
    image = sitk.ReadImage(str(path))
    assert repr(geometry.direction) == repr(tuple(image.GetDirection()))  # identity: (x, y, z) reversal is moot
    assert repr(geometry.origin) == repr(tuple(image.GetOrigin()))


def test_read_image_in_memory_path_on_the_real_case(brats_case_dir):
    """Every file of the real BraTS case (label maps and MR images) reads as SimpleITK reads it."""
    files = sorted(brats_case_dir.rglob("*.nii.gz"))
    assert len(files) >= 10
    viewed = 0
    for path in files:
        expected, expected_geometry = _sitk_reference(path)
        got, geometry = qio.read_image_view(path)
        np.testing.assert_array_equal(got, expected, err_msg=str(path))
        assert got.dtype == expected.dtype and geometry == expected_geometry, path
        viewed += not got.flags.writeable
    assert viewed >= 5  # at least the five candidates took the in-memory path


def test_read_image_multi_member_gzip_reads_as_simpleitk(tmp_path, label_map):
    """A gzip file of two members (concatenated streams) is not taken in memory; the
    streaming path reads it as SimpleITK does."""
    plain = tmp_path / "a.nii"
    _sitk_write(label_map, plain, compress=False)
    data = plain.read_bytes()
    target = tmp_path / "b.nii.gz"
    target.write_bytes(gzip.compress(data[:500]) + gzip.compress(data[500:]))
    assert qnifti._inflate_whole(str(target)) is None
    got, _ = read_image(target)
    np.testing.assert_array_equal(got, label_map)


def test_read_image_error_prefix_names_case_role_and_file(tmp_path):
    missing = tmp_path / "isen-20.nii.gz"
    with pytest.raises(
        ImageReadError,
        match=r"^case 'BraTS-017', algorithm 'isen-20': cannot read '.*isen-20\.nii\.gz': "
        r"the file does not exist\.$",
    ):
        read_image(missing, case="BraTS-017", role="algorithm 'isen-20'")
    with pytest.raises(ImageReadError, match=r"^cannot read '.*': the file does not exist"):
        read_image(missing)
    with pytest.raises(ImageReadError, match=r"^image 't1': cannot read"):
        read_image(missing, role="image 't1'")


def test_read_image_broken_symlink(tmp_path):
    link = tmp_path / "a.nii.gz"
    link.symlink_to(tmp_path / "gone.nii.gz")
    with pytest.raises(ImageReadError, match=r"broken symbolic link \(it points to '.*gone\.nii\.gz'"):
        read_image(link, case="c1", role="reference")


def test_read_image_follows_good_symlink(tmp_path, label_map):
    _sitk_write(label_map, tmp_path / "real.nii.gz")
    (tmp_path / "link.nii.gz").symlink_to(tmp_path / "real.nii.gz")
    np.testing.assert_array_equal(read_image(tmp_path / "link.nii.gz")[0], label_map)


def test_read_image_directory(tmp_path):
    (tmp_path / "a.nii.gz").mkdir()
    with pytest.raises(ImageReadError, match=r"it is a directory, not an image file"):
        read_image(tmp_path / "a.nii.gz")


def test_read_image_empty_file(tmp_path):
    (tmp_path / "a.nii.gz").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"case 'c1', reference: .*the file is empty \(0 bytes\)"):
        read_image(tmp_path / "a.nii.gz", case="c1", role="reference")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root can read a chmod 000 file; see the emulated test below")
def test_read_image_permission_denied_real(tmp_path, label_map):
    path = tmp_path / "a.nii.gz"
    _sitk_write(label_map, path)
    path.chmod(0)
    try:
        with pytest.raises(ImageReadError, match=r"permission denied"):
            read_image(path)
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_read_image_permission_denied_emulated(tmp_path, label_map, monkeypatch):
    """As root chmod 000 is still readable, so the PermissionError of open() is emulated."""
    path = tmp_path / "a.nii.gz"
    _sitk_write(label_map, path)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(qio, "open", denied, raising=False)
    with pytest.raises(ImageReadError, match=r"case 'c1', algorithm 'a': cannot read .*: permission denied"):
        read_image(path, case="c1", role="algorithm 'a'")


def test_read_image_other_os_error(tmp_path, label_map, monkeypatch):
    path = tmp_path / "a.nii.gz"
    _sitk_write(label_map, path)

    def broken(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(qio, "open", broken, raising=False)
    with pytest.raises(ImageReadError, match=r"the file cannot be opened \(Input/output error\)"):
        read_image(path)


@pytest.fixture
def big_gzip_bytes(tmp_path, rng) -> bytes:
    """A .nii.gz large enough that truncating it cuts the deflate stream itself."""
    _sitk_write(rng.integers(0, 5, (20, 30, 40)).astype(np.uint8), tmp_path / "big.nii.gz")
    return (tmp_path / "big.nii.gz").read_bytes()


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, -4])
def test_read_image_truncated_gzip(tmp_path, big_gzip_bytes, keep):
    """SimpleITK itself reads these silently, padding with zeros; we must not."""
    cut = big_gzip_bytes[:keep] if keep < 0 else big_gzip_bytes[: int(len(big_gzip_bytes) * keep)]
    path = tmp_path / "t.nii.gz"
    path.write_bytes(cut)
    with pytest.raises(ImageReadError, match=r"truncated or corrupt gzip file: the gzip stream is truncated"):
        read_image(path, case="c1", role="algorithm 'a'")


def test_read_image_corrupt_gzip(tmp_path, big_gzip_bytes):
    data = bytearray(big_gzip_bytes)
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "t.nii.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match=r"truncated or corrupt gzip file: the gzip data are corrupt"):
        read_image(path)


def test_read_image_gzip_of_garbage(tmp_path):
    path = tmp_path / "t.nii.gz"
    path.write_bytes(gzip.compress(b"this is not an image at all" * 20))
    with pytest.raises(ImageReadError, match=r"not an image SimpleITK can read"):
        read_image(path)


def test_read_image_truncated_raw_nifti(tmp_path, label_map):
    """An uncompressed .nii cut short: SimpleITK pads with zeros, the header says otherwise."""
    _sitk_write(label_map, tmp_path / "a.nii")
    data = (tmp_path / "a.nii").read_bytes()
    (tmp_path / "t.nii").write_bytes(data[: len(data) - 100])
    with pytest.raises(ImageReadError, match=rf"NIfTI data are truncated: it holds {len(data) - 100} bytes, "
                       rf"its header promises {len(data)}"):
        read_image(tmp_path / "t.nii")


def test_read_image_truncated_raw_float_nifti(tmp_path):
    """The same for float voxels, whose NaN voxels are looked up in the file: the missing
    bytes are reported, not read past."""
    image = np.linspace(0.0, 1.0, 1000, dtype=np.float32).reshape(10, 10, 10)
    full = tmp_path / "full.nii"
    sitk.WriteImage(sitk.GetImageFromArray(image), str(full))
    path = tmp_path / "t.nii"
    path.write_bytes(full.read_bytes()[:-400])
    with pytest.raises(ImageReadError, match=r"the NIfTI data are truncated: it holds \d+ bytes"):
        read_image(path)


def test_read_image_truncated_nrrd_keeps_one_line(tmp_path, label_map):
    _sitk_write(label_map, tmp_path / "a.nrrd")
    data = (tmp_path / "a.nrrd").read_bytes()
    (tmp_path / "t.nrrd").write_bytes(data[: int(len(data) * 0.7)])
    with pytest.raises(ImageReadError, match=r"SimpleITK could not read it \(") as info:
        read_image(tmp_path / "t.nrrd")
    message = str(info.value)
    assert "\n" not in message and ".cxx" not in message and "sitk::ERROR" not in message


@pytest.mark.parametrize("name", ["notes.txt", "fake.nii.gz", "fake.nii", "fake.mha"])
def test_read_image_not_an_image(tmp_path, name):
    (tmp_path / name).write_text("hello, I am a text file\n")
    with pytest.raises(ImageReadError, match=r"it is not an image SimpleITK can read") as info:
        read_image(tmp_path / name)
    assert "\n" not in str(info.value)


def test_read_image_2d(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 6), np.uint8)), str(tmp_path / "a.nii.gz"))
    with pytest.raises(ImageReadError, match=r"it is 2-D \(size 5 x 6\); expected a 3-D image"):
        # 2-D images are read since issue 13; `ndim=3` asks for a volume
        read_image(tmp_path / "a.nii.gz", case="c1", role="algorithm 'flat'", ndim=3)


def test_read_image_4d(tmp_path):
    volume = sitk.GetImageFromArray(np.zeros((3, 5, 6), np.uint8))
    sitk.WriteImage(sitk.JoinSeries([volume, volume]), str(tmp_path / "a.nii.gz"))
    with pytest.raises(ImageReadError, match=r"it is 4-D \(size 2 x 3 x 5 x 6\); expected a 3-D image"):
        read_image(tmp_path / "a.nii.gz")


def test_read_image_vector(tmp_path):
    image = sitk.GetImageFromArray(np.zeros((3, 5, 6, 3), np.uint8), isVector=True)
    sitk.WriteImage(image, str(tmp_path / "a.nrrd"))
    with pytest.raises(ImageReadError, match=r"it has 3 components per voxel .*expected a scalar 3-D image"):
        read_image(tmp_path / "a.nrrd")


def test_read_and_write_non_utf8_file_name(tmp_path, label_map):
    """SimpleITK aborts the process on such names; we go through an ASCII alias."""
    name = os.fsdecode(b"caf\xe9-\xff.nii.gz")
    path = os.path.join(os.fsdecode(bytes(tmp_path)), name)
    write_image(label_map, path, geometry=Geometry(SHAPE, spacing=(2.0, 1.0, 1.0)))
    assert os.path.exists(path)
    array, g = read_image(path)
    np.testing.assert_array_equal(array, label_map)
    assert g.spacing == (2.0, 1.0, 1.0)
    assert read_image(os.fsencode(path))[1] == g  # bytes paths work too


def test_read_and_write_long_utf8_file_name(tmp_path, label_map):
    name = "é" * 40 + "x" * 150 + ".nii.gz"  # 237 bytes: close to the 255-byte limit
    write_image(label_map, tmp_path / name)
    np.testing.assert_array_equal(read_image(tmp_path / name)[0], label_map)


# --------------------------------------------------------------------------- writing


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.int64])
def test_write_image_round_trip_through_simpleitk(tmp_path, label_map, suffix, dtype):
    g = Geometry(SHAPE, spacing=(3.0, 0.8, 0.5), origin=(30.0, -20.0, 10.0),
                 direction=np.asarray(SITK_DIRECTION).reshape(3, 3)[::-1, ::-1].ravel())
    path = tmp_path / f"a{suffix}"
    write_image(label_map.astype(dtype), path, geometry=g)
    image = sitk.ReadImage(str(path))  # read back with SimpleITK itself
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), label_map)
    assert image.GetSpacing() == pytest.approx((0.5, 0.8, 3.0))
    assert image.GetOrigin() == pytest.approx((10.0, -20.0, 30.0))
    assert image.GetDirection() == pytest.approx(SITK_DIRECTION)
    assert read_image(path)[1].direction == pytest.approx(g.direction)


def test_write_image_bool_and_float16(tmp_path):
    write_image(np.ones((2, 3, 4), bool), tmp_path / "b.nii.gz")
    write_image(np.full((2, 3, 4), 0.5, np.float16), tmp_path / "f.nii.gz")
    assert read_image(tmp_path / "b.nii.gz")[0].dtype == np.uint8
    f, _ = read_image(tmp_path / "f.nii.gz")
    assert f.dtype == np.float32 and f.max() == 0.5


def test_write_image_errors(tmp_path):
    # 2-D arrays are written since issue 13; 1-D ones are not
    with pytest.raises(InputError, match=r"`array` must be 3-D \(z, y, x\) or 2-D \(y, x\); got shape \(3,\)"):
        write_image(np.zeros((3,)), tmp_path / "a.nii.gz")
    with pytest.raises(GeometryError, match=r"`geometry.shape` \(2, 3, 5\) does not match `array.shape` \(2, 3, 4\)"):
        write_image(np.zeros((2, 3, 4)), tmp_path / "a.nii.gz", geometry=Geometry((2, 3, 5)))
    with pytest.raises(InputError, match=r"cannot write '.*a\.xyz': .*use a suffix SimpleITK writes"):
        write_image(np.zeros((2, 3, 4)), tmp_path / "a.xyz")
    with pytest.raises(InputError, match=r"the folder '.*nowhere' does not exist; create it first"):
        write_image(np.zeros((2, 3, 4)), tmp_path / "nowhere" / "a.nii.gz")
    # nothing half-written is left behind by the failed writes
    assert sorted(os.listdir(tmp_path)) == []


def test_write_image_replaces_existing_file(tmp_path):
    path = tmp_path / "a.nii.gz"
    write_image(np.zeros((2, 3, 4), np.uint8), path)
    write_image(np.ones((2, 3, 4), np.uint8), path)
    assert read_image(path)[0].min() == 1
    assert os.listdir(tmp_path) == ["a.nii.gz"]


# --------------------------------------------------------------------------- atomic writes


def test_atomic_write_text_and_bytes(tmp_path):
    atomic_write_text(tmp_path / "a.csv", "case,risk\nc1,3\n")
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\xff")
    assert (tmp_path / "a.csv").read_text() == "case,risk\nc1,3\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a.csv").stat().st_mode) == 0o666 & ~umask


def test_atomic_write_failure_keeps_old_file(tmp_path):
    target = tmp_path / "worklist.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(target) as f:
            f.write("half of the new")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["worklist.csv"]


def test_atomic_write_binary_mode_and_bad_mode(tmp_path):
    with atomic_write(tmp_path / "x.bin", "wb") as f:
        f.write(b"abc")
    assert (tmp_path / "x.bin").read_bytes() == b"abc"
    with pytest.raises(InputError, match=r"`mode` must be one of \['w', 'wb', 'wt'\]; got 'a'"):
        with atomic_write(tmp_path / "x.bin", "a"):
            pass


def test_atomic_path_temp_is_hidden_and_keeps_suffix(tmp_path):
    with atomic_path(tmp_path / "scores.nii.gz") as tmp:
        name = os.path.basename(tmp)
        assert name.startswith(".") and name.endswith(".nii.gz")
        assert os.path.dirname(tmp) == str(tmp_path)
        with open(tmp, "w") as f:
            f.write("x")
    assert os.listdir(tmp_path) == ["scores.nii.gz"]


def test_atomic_path_rejects_directory_target(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(InputError, match=r"cannot write '.*out': it is a directory; expected a file path"):
        with atomic_path(tmp_path / "out"):
            pass


def test_image_suffix():
    assert image_suffix("a/b.nii.gz") == ".nii.gz"
    assert image_suffix("a.b.c.tar.xz") == ".tar.xz"
    assert image_suffix("scores.nc") == ".nc"
    assert image_suffix(".gz") == ""
    assert image_suffix("x.ñii", ascii_only=True) == ""


# --------------------------------------------------------------------------- check_geometry

BASE = Geometry(SHAPE, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))


@pytest.mark.parametrize(
    ("other", "match"),
    [
        (Geometry(SHAPE, spacing=(3.0, 1.0, 1.0)),
         r"^case 'BraTS-017', algorithm 'isen-20': spacing \(3\.0, 1\.0, 1\.0\) differs from the first "
         r"candidate's \(1\.0, 1\.0, 1\.0\) \(algorithm 'hnfnet'\); resample it, pass `resample=True`, "
         r"or pass `check_geometry=False`"),
        (Geometry(SHAPE, origin=(0.0, 0.0, 2.5)),
         r"algorithm 'isen-20': origin \(0\.0, 0\.0, 2\.5\) differs from the first candidate's \(0\.0, 0\.0, 0\.0\)"),
        (Geometry(SHAPE, direction=(1, 0, 0, 0, 0, 1, 0, 1, 0)),
         r"algorithm 'isen-20': direction \(1\.0, 0\.0, 0\.0, 0\.0, 0\.0, 1\.0, 0\.0, 1\.0, 0\.0\) differs"),
        (Geometry((8, 10, 13)),
         r"algorithm 'isen-20': shape \(8, 10, 13\) differs from the first candidate's \(8, 10, 12\) "
         r"\(algorithm 'hnfnet'\); resample it or pass `resample=True` \(`check_geometry=False` cannot help"),
    ],
)
def test_check_geometry_messages(other, match):
    with pytest.raises(GeometryError, match=match):
        check_geometry({"hnfnet": BASE, "sanet": BASE, "isen-20": other}, case="BraTS-017")


def test_check_geometry_tolerance_and_shape_only():
    near = Geometry(SHAPE, spacing=(1.00001, 1.0, 0.99999), origin=(5e-6, 0.0, -5e-6),
                    direction=(1.0, 1e-6, 0, 0, 1, 0, 0, 0, 1))
    assert check_geometry({"a": BASE, "b": near}, case="c") == BASE
    far = Geometry(SHAPE, spacing=(1.001, 1.0, 1.0))
    with pytest.raises(GeometryError, match="spacing"):
        check_geometry({"a": BASE, "b": far}, case="c")
    assert check_geometry({"a": BASE, "b": far}, case="c", shape_only=True) == BASE
    with pytest.raises(GeometryError, match="shape"):
        check_geometry({"a": BASE, "b": Geometry((1, 2, 3))}, case="c", shape_only=True)


def test_check_geometry_other_roles_and_empty():
    with pytest.raises(GeometryError, match=r"^case 'c', image 't2': spacing .* first image's .*\(image 't1'\); "
                       r"resample it or pass `resample=True`\.$"):
        check_geometry({"t1": BASE, "t2": Geometry(SHAPE, spacing=(2, 2, 2))}, case="c", role="image")
    with pytest.raises(InputError, match=r"case 'c': `geometries` is empty"):
        check_geometry({}, case="c")


# --------------------------------------------------------------------------- resample_to


def test_resample_to_identity_and_upsampling():
    a = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    g = Geometry(a.shape, spacing=(2.0, 1.0, 1.0))
    np.testing.assert_array_equal(resample_to(a, g, g), a)
    # halve the z spacing: every slice appears twice (voxel centres at -0.5 mm, 0.5 mm, ...)
    fine = Geometry((4, 3, 4), spacing=(1.0, 1.0, 1.0), origin=(-0.5, 0.0, 0.0))
    out = resample_to(a, g, fine)
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out, np.repeat(a, 2, axis=0))


def test_resample_to_keeps_labels_and_fills_outside(label_map):
    g = Geometry(SHAPE)
    shifted = Geometry(SHAPE, origin=(0.0, 0.0, 3.0))
    out = resample_to(label_map, g, shifted, default_value=0)
    assert set(np.unique(out)) <= {0, 1, 2, 4}
    np.testing.assert_array_equal(out[:, :, :-3], label_map[:, :, 3:])
    assert (out[:, :, -3:] == 0).all()
    b = resample_to(label_map > 0, g, shifted)
    assert b.dtype == bool


def test_resample_to_shape_mismatch():
    with pytest.raises(GeometryError, match=r"`image_array` has shape \(2, 3, 4\) but `geometry.shape` is \(2, 3, 5\)"):
        resample_to(np.zeros((2, 3, 4)), Geometry((2, 3, 5)), Geometry((2, 3, 5)))


def test_sitk_message_keeps_one_useful_line():
    text = (
        "Exception thrown in SimpleITK ImageFileReader_Execute: /x/Code/IO/src/sitkImageReaderBase.cxx:99:\n"
        "sitk::ERROR: Unable to determine ImageIO reader for \"a.nii\""
    )
    assert qnifti.sitk_message(RuntimeError(text)) == 'Unable to determine ImageIO reader for "a.nii"'
    nrrd = (
        "Exception thrown in SimpleITK ImageFileReader_Execute: /x/itkNrrdImageIO.cxx:935:\n"
        "ITK ERROR: NrrdImageIO(0x55d): Read: Error reading t.nrrd:\n"
        "[nrrd] nrrdLoad: trouble reading \"t.nrrd\"\n"
        "[nrrd] _nrrdEncodingGzip_read: expected 120000 bytes but received 83"
    )
    assert qnifti.sitk_message(RuntimeError(nrrd)) == "_nrrdEncodingGzip_read: expected 120000 bytes but received 83"
    assert qnifti.sitk_message(RuntimeError("")) == "SimpleITK gave no reason"


def test_write_image_into_non_utf8_folder(tmp_path, label_map):
    folder = os.path.join(os.fsdecode(bytes(tmp_path)), os.fsdecode(b"dossier-\xe9"))
    os.mkdir(folder)
    path = os.path.join(folder, "a.nii.gz")
    write_image(label_map, path)
    np.testing.assert_array_equal(read_image(path)[0], label_map)
    assert os.listdir(folder) == ["a.nii.gz"]


def test_write_image_two_file_formats_in_place(tmp_path, label_map):
    write_image(label_map, tmp_path / "a.mhd", geometry=Geometry(SHAPE, spacing=(2.0, 1.0, 1.0)))
    assert sorted(os.listdir(tmp_path)) == ["a.mhd", "a.zraw"]  # compressed data file
    image = sitk.ReadImage(str(tmp_path / "a.mhd"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), label_map)
    assert image.GetSpacing() == (1.0, 1.0, 2.0)
    odd = os.path.join(os.fsdecode(bytes(tmp_path)), os.fsdecode(b"b-\xff.mhd"))
    with pytest.raises(InputError, match=r"cannot write '.*\.mhd': SimpleITK cannot write a two-file format under "
                       r"a name that is not valid UTF-8"):
        write_image(label_map, odd)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_read_image_keeps_nan_voxels_of_float_nifti(tmp_path, suffix):
    """SimpleITK's NIfTI reader turns NaN into 0; read_image puts the NaNs back."""
    arr = np.zeros((3, 4, 5), np.float32)
    arr[1, 2, 3] = np.nan
    arr[0, 0, 0] = 2.0
    path = tmp_path / f"p{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    assert not np.isnan(sitk.GetArrayFromImage(sitk.ReadImage(str(path)))).any()  # the trap
    got, _ = read_image(path)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(arr))
    assert got[0, 0, 0] == 2.0


@pytest.mark.parametrize("members", [1, 2])
def test_read_image_without_room_for_the_decompressed_copy(tmp_path, members, monkeypatch):
    """A full RAM folder (every write fails): a float NIfTI in one gzip member (inflated in
    memory) or in two (streamed) still reads right, SimpleITK inflating the file itself and
    its NaN voxels found in the gzip'd data; a corrupt file is still named as such; no
    partial copy is left behind."""
    image = np.linspace(-1.5, 7.25, 3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    image[1, 2, 3] = image[2, 0, 4] = np.nan
    plain = tmp_path / "a.nii"
    sitk.WriteImage(sitk.GetImageFromArray(image), str(plain))
    data = plain.read_bytes()
    path = tmp_path / "a.nii.gz"
    cut = len(data) // members
    path.write_bytes(b"".join(gzip.compress(data[k * cut : (k + 1) * cut if k < members - 1 else None])
                              for k in range(members)))
    broken = tmp_path / "broken.nii.gz"
    whole = gzip.compress(data)
    broken.write_bytes(whole[:-12] + bytes(4) + whole[-8:])  # a wrong CRC
    folder = tmp_path / "ram"
    folder.mkdir()
    monkeypatch.setattr(qnifti, "_ram_folder", lambda: str(folder))

    class Full(io.RawIOBase):
        def writable(self):
            return True

        def write(self, b):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(qnifti.os, "fdopen", lambda fd, mode: (os.close(fd), Full())[1])
    got, _ = read_image(path)
    np.testing.assert_array_equal(got, image)
    with pytest.raises(ImageReadError, match="truncated or corrupt gzip file"):
        read_image(broken)
    assert os.listdir(folder) == []


def test_read_image_leaves_no_decompressed_copy(tmp_path):
    from qe_nb.data.nifti import _ram_folder

    path = tmp_path / "a.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((3, 4, 5), np.uint8)), str(path))
    before = set(os.listdir(_ram_folder()))
    read_image(path)
    assert {n for n in os.listdir(_ram_folder()) if n.startswith("qe_nb-")} <= before
