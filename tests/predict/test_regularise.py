"""Map regularisation: the majority filter and the sieve on hand-built maps with known
answers, against plain reference implementations of the documented rules, and blockwise on
real GeoTiffs (several blocks wide, patches crossing the seams) equal to the whole scene."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from scipy import ndimage

from geoensemble.errors import ConfigError, InputFileError, OutputError
from geoensemble.io.geotiff import write_geotiff
from geoensemble.predict.regularise import (
    check_settings,
    describe,
    hectares_to_pixels,
    majority_filter,
    regularise,
    sieve,
    sieve_window,
    speckle,
)
from geoensemble.predict.regularise_file import (
    TAG,
    read_legend,
    regularise_file,
    speckle_file,
)

ND = 255
TRANSFORM = Affine(30.0, 0.0, 440_000.0, 0.0, -30.0, 4_480_000.0)
NAMES = {c: f"class {c}" for c in range(8)}
CMAP = {c: (30 * c, 255 - 30 * c, 7 * c) for c in range(8)}


def u8(rows: list[list[int]]) -> np.ndarray:
    return np.array(rows, dtype=np.uint8)


def noisy_map(height: int = 300, width: int = 420, *, seed: int = 0, noise: float = 0.3):
    """Smooth regions of 8 classes, salt-and-pepper noise, no-data specks and a no-data
    corner: patches of every size, many crossing 64-px block seams."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    smooth = np.sin(yy / 19.0) + np.cos(xx / 27.0) + np.sin((xx + yy) / 41.0)
    classes = np.digitize(smooth, np.linspace(-2.2, 2.2, 9)[1:-1]).astype(np.uint8)
    salt = rng.random(classes.shape) < noise
    classes[salt] = rng.integers(0, 8, int(salt.sum()))
    classes[rng.random(classes.shape) < 0.02] = ND
    classes[:37, :51] = ND
    return classes


def write_map(path: Path, classes: np.ndarray, **tags: str) -> Path:
    return write_geotiff(
        path,
        classes,
        crs="EPSG:32613",
        transform=TRANSFORM,
        nodata=ND,
        colormap=CMAP,
        tags={
            "geoensemble_output": "vote",
            "class_names": json.dumps({str(c): n for c, n in NAMES.items()}),
            **tags,
        },
    )


# -- references: the documented rules, written plainly --------------------------------------


def brute_majority(a: np.ndarray, radius: int) -> np.ndarray:
    out = a.copy()
    for i, j in zip(*np.nonzero(a != ND), strict=True):
        win = a[max(0, i - radius) : i + radius + 1, max(0, j - radius) : j + radius + 1]
        codes, counts = np.unique(win[win != ND], return_counts=True)
        tied = codes[counts == counts.max()]
        out[i, j] = a[i, j] if a[i, j] in tied else tied.min()
    return out


def components(a: np.ndarray, connectivity: int) -> tuple[np.ndarray, np.ndarray]:
    s = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    labels = np.zeros(a.shape, int)
    n = 0
    for code in np.unique(a[a != ND]):
        lab, k = ndimage.label(a == code, structure=s)
        labels[lab > 0] = lab[lab > 0] + n
        n += k
    return labels, np.bincount(labels.ravel(), minlength=n + 1)


def reference_sieve(a: np.ndarray, min_pixels: int, connectivity: int) -> np.ndarray:
    """The rule of :func:`sieve` as stated: rounds over the components of the current map
    (recomputed each round), per-class border with large components, then islands."""
    cur = a.copy()
    h, w = a.shape
    steps = [(0, 1), (0, -1), (1, 0), (-1, 0)]
    if connectivity == 8:
        steps += [(1, 1), (1, -1), (-1, 1), (-1, -1)]
    while True:
        labels, sizes = components(cur, connectivity)
        large = (sizes >= min_pixels)[labels] & (labels > 0)
        border: dict[int, dict[int, int]] = {}
        for i, j in zip(*np.nonzero((labels > 0) & ~large), strict=True):
            for di, dj in steps:
                y, x = i + di, j + dj
                if 0 <= y < h and 0 <= x < w and large[y, x]:
                    counts = border.setdefault(labels[i, j], {})
                    counts[cur[y, x]] = counts.get(cur[y, x], 0) + 1
        if not border:
            break
        new = cur.copy()
        for patch, counts in border.items():
            new[labels == patch] = min(counts, key=lambda c: (-counts[c], c))
        cur = new
    s = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    islands, n = ndimage.label((labels > 0) & ~large, structure=s)
    for k in range(1, n + 1):
        codes, counts = np.unique(cur[islands == k], return_counts=True)
        cur[islands == k] = codes[counts == counts.max()].min()
    return cur


# -- majority filter -------------------------------------------------------------------------


def test_a_salt_pixel_goes_with_radius_1() -> None:
    a = np.full((5, 5), 3, np.uint8)
    a[2, 2] = 7
    out = majority_filter(a, radius=1)
    assert (out == 3).all()
    assert out.dtype == np.uint8 and a[2, 2] == 7  # the input is not changed


def test_a_tie_keeps_the_centre_else_the_smaller_code() -> None:
    # centre 2: its window holds 1 x4, 2 x4 (centre included), 5 x1 -> tie 1/2 -> keeps 2
    a = u8([[1, 1, 5], [1, 2, 2], [1, 2, 2]])
    assert majority_filter(a)[1, 1] == 2
    # centre 5, not among the tied 1 and 2 (four each): the smaller code, 1
    b = u8([[1, 1, 2], [1, 5, 2], [1, 2, 2]])
    assert majority_filter(b)[1, 1] == 1
    # the same with the codes swapped: still the smaller code
    c = u8([[2, 2, 1], [2, 5, 1], [2, 1, 1]])
    assert majority_filter(c)[1, 1] == 1


def test_no_data_never_spreads_and_is_never_counted() -> None:
    a = u8([[ND, ND, ND], [ND, 4, ND], [ND, ND, 6]])
    out = majority_filter(a)
    # the centre sees 4 and 6 once each (no-data not counted): a tie, it keeps 4
    assert out.tolist() == [[ND, ND, ND], [ND, 4, ND], [ND, ND, 6]]
    b = np.full((5, 5), 1, np.uint8)
    b[2, 2] = ND
    assert majority_filter(b, radius=2)[2, 2] == ND  # a hole is not filled
    assert (majority_filter(b, radius=2)[b != ND] == 1).all()


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_the_majority_filter_equals_a_plain_window_count(radius: int) -> None:
    a = noisy_map(40, 53, seed=radius, noise=0.6)
    assert np.array_equal(majority_filter(a, radius=radius), brute_majority(a, radius))


def test_uint16_maps_and_no_nodata() -> None:
    a = np.array([[300, 300, 300], [300, 7, 300], [300, 300, 65535]], np.uint16)
    assert majority_filter(a, nodata=65535).tolist() == [
        [300, 300, 300],
        [300, 300, 300],
        [300, 300, 65535],
    ]
    assert majority_filter(a, nodata=None)[2, 2] == 300  # 65535 is a class here


# -- sieve -----------------------------------------------------------------------------------


def two_bands() -> np.ndarray:
    """Class 1 above class 2, and a vertical 3-px patch of class 3 across the boundary."""
    a = np.ones((6, 6), np.uint8)
    a[3:] = 2
    a[2:5, 2] = 3
    return a


def test_a_small_patch_takes_the_class_it_shares_most_border_with() -> None:
    a = two_bands()
    # border of the class-3 patch: class 1 on 3 pixel edges, class 2 on 5
    out = sieve(a, min_pixels=5)
    assert out[2:5, 2].tolist() == [2, 2, 2]
    expected = a.copy()
    expected[2:5, 2] = 2
    assert np.array_equal(out, expected)
    # 8-connected: corners count too (class 1: 5, class 2: 7), same winner
    assert np.array_equal(sieve(a, min_pixels=5, connectivity=8), expected)


@pytest.mark.parametrize("tl, rest", [(1, 4), (4, 1)])
def test_a_border_tie_goes_to_the_smaller_code(tl: int, rest: int) -> None:
    a = np.full((6, 6), rest, np.uint8)
    a[:3, :3] = tl
    a[2, 2] = 2  # two edges on the top-left quadrant, two on the rest
    assert sieve(a, min_pixels=5)[2, 2] == 1


def test_4_and_8_connectivity_differ_on_a_diagonal() -> None:
    a = np.ones((7, 7), np.uint8)
    for i in range(1, 6):
        a[i, i] = 3  # five pixels touching by their corners only
    # 8-connected: one patch of exactly min_pixels, which stays
    assert np.array_equal(sieve(a, min_pixels=5, connectivity=8), a)
    # 4-connected: five 1-px patches, each surrounded by class 1
    assert (sieve(a, min_pixels=5, connectivity=4) == 1).all()


def test_a_patch_of_exactly_min_pixels_stays() -> None:
    a = np.ones((6, 6), np.uint8)
    a[1, 1:4] = 2
    a[2, 1:3] = 2  # 5 px
    assert np.array_equal(sieve(a, min_pixels=5), a)
    assert (sieve(a, min_pixels=6) == 1).all()


def test_no_data_is_never_filled_and_islands_take_their_majority() -> None:
    a = np.full((7, 7), ND, np.uint8)
    a[1, 1:4] = [4, 4, 6]  # an island of 3 px in no-data: its majority class, 4
    a[4:7, 4:7] = 2
    a[5, 5] = ND  # a hole in a large patch stays a hole
    a[3, 0] = 1  # a lone pixel: an island of one, nothing to join
    out = sieve(a, min_pixels=5)
    assert out[1, 1:4].tolist() == [4, 4, 4]
    assert out[5, 5] == ND and out[3, 0] == 1
    assert np.array_equal(out == ND, a == ND)


def test_specks_inside_small_patches_go_from_the_outside_in() -> None:
    a = np.ones((7, 7), np.uint8)
    a[2:5, 2:5] = 2  # a ring of 8 px of class 2 (small for min_pixels=10)...
    a[3, 3] = 3  # ...around a 1-px speck of class 3 that touches only the ring
    out = sieve(a, min_pixels=10)
    assert (out == 1).all()  # the ring joins class 1, then the speck does


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("min_pixels", [2, 5, 12])
def test_the_sieve_equals_the_rule_written_plainly(connectivity: int, min_pixels: int) -> None:
    for seed in range(3):
        a = noisy_map(37, 41, seed=seed, noise=0.5)
        got = sieve(a, min_pixels=min_pixels, connectivity=connectivity)
        assert np.array_equal(got, reference_sieve(a, min_pixels, connectivity)), seed
        assert np.array_equal(got == ND, a == ND)  # no-data kept, never filled
        # what stays small is an island: it touches nothing but no-data
        labels, sizes = components(got, connectivity)
        s = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
        for patch in np.flatnonzero(sizes[1:] < min_pixels) + 1:
            ring = ndimage.binary_dilation(labels == patch, structure=s) & (labels != patch)
            assert (got[ring] == ND).all()


def test_a_cut_window_marks_what_it_cannot_know() -> None:
    a = np.ones((6, 12), np.uint8)
    a[2, 9:12] = 2  # a 3-px patch touching the right side, which is cut
    a[2, 2] = 3  # a speck far from it
    out, exact = sieve_window(a, min_pixels=5, cut=(False, False, False, True))
    assert out[2, 2] == 1 and exact[2, 2]
    assert not exact[2, 9:12].any()  # it may continue beyond the window
    assert exact[0].all() and exact[:, :9].all()


# -- blockwise on GeoTiffs -------------------------------------------------------------------


@pytest.mark.parametrize(
    "radius, min_pixels, connectivity",
    [(1, None, 4), (2, None, 4), (None, 5, 4), (None, 9, 8), (1, 12, 4), (2, 30, 8)],
)
def test_blockwise_equals_the_whole_scene(
    tmp_path: Path, radius: int | None, min_pixels: int | None, connectivity: int
) -> None:
    classes = noisy_map()
    src = write_map(tmp_path / "vote.tif", classes)
    res = regularise_file(
        src,
        tmp_path / "out.tif",
        radius=radius,
        min_pixels=min_pixels,
        connectivity=connectivity,
        block_size=64,
        halo=8,
    )
    want = regularise(classes, radius=radius, min_pixels=min_pixels, connectivity=connectivity)
    with rasterio.open(res.path) as out:
        got = out.read(1)
        assert out.crs.to_epsg() == 32613 and out.transform == TRANSFORM
        assert out.nodata == ND and out.dtypes[0] == "uint8"
        assert {c: out.colormap(1)[c][:3] for c in CMAP} == CMAP
        tags = out.tags()
    assert np.array_equal(got, want)
    applied = describe(radius, min_pixels, connectivity)
    assert tags[TAG] == res.applied == applied
    assert tags["geoensemble_output"] == "vote"
    assert json.loads(tags["class_names"]) == {str(c): n for c, n in NAMES.items()}
    unit = min_pixels or 5
    assert res.before == speckle(classes, min_pixels=unit, connectivity=connectivity)
    assert res.after == speckle(want, min_pixels=unit, connectivity=connectivity)


def test_blockwise_uint16_maps_equal_the_whole_scene(tmp_path: Path) -> None:
    classes = noisy_map(130, 170, seed=5).astype(np.uint16) * 300  # codes 0..2100
    classes[classes == ND * 300] = 65535
    src = write_geotiff(
        tmp_path / "u16.tif",
        classes,
        crs="EPSG:32613",
        transform=TRANSFORM,
        nodata=65535,
        tags={"geoensemble_output": "vote"},
    )
    res = regularise_file(src, tmp_path / "out.tif", radius=1, min_pixels=7, block_size=48)
    want = regularise(classes, radius=1, min_pixels=7, nodata=65535)
    with rasterio.open(res.path) as out:
        assert out.dtypes[0] == "uint16" and out.nodata == 65535
        assert np.array_equal(out.read(1), want)
    assert (want == 65535).sum() == (classes == 65535).sum()


def test_the_output_keeps_the_legend_and_its_sidecars(tmp_path: Path) -> None:
    src = write_map(tmp_path / "vote.tif", noisy_map(90, 130))
    out = regularise_file(src, tmp_path / "reg.tif", radius=1, min_pixels=4).path
    with rasterio.open(out) as ds:
        names, cmap = read_legend(ds)
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"  # like the stage's maps
    assert names == NAMES and cmap is not None
    assert {c: cmap[c][:3] for c in CMAP} == CMAP
    aux = Path(f"{out}.aux.xml").read_text()
    assert "<Category>class 7</Category>" in aux
    assert 'label="class 3"' in out.with_suffix(".qml").read_text()


def test_a_noisy_sieve_widens_its_halo_and_stays_exact(tmp_path: Path) -> None:
    classes = noisy_map(200, 260, noise=0.7)  # specks everywhere: clusters cross all seams
    src = write_map(tmp_path / "vote.tif", classes)
    res = regularise_file(src, tmp_path / "out.tif", min_pixels=6, block_size=64, halo=4)
    assert res.halo > 4
    with rasterio.open(res.path) as out:
        assert np.array_equal(out.read(1), sieve(classes, min_pixels=6))
    too_big = r"\(halo \d+\) around block .*, above max_window_pixels=5000: raise"
    with pytest.raises(ConfigError, match=too_big):
        regularise_file(
            src, tmp_path / "o2.tif", min_pixels=6, block_size=64, halo=4, max_window_pixels=5000
        )


def test_regularising_twice_appends_to_the_tag(tmp_path: Path) -> None:
    src = write_map(tmp_path / "vote.tif", noisy_map(80, 90))
    first = regularise_file(src, tmp_path / "a.tif", radius=1).path
    second = regularise_file(first, tmp_path / "b.tif", min_pixels=3, connectivity=8).path
    with rasterio.open(second) as ds:
        assert ds.tags()[TAG] == "majority(radius=1);sieve(min_pixels=3,connectivity=8)"


def test_speckle_drops_after_regularisation(tmp_path: Path) -> None:
    classes = noisy_map(seed=3)
    before = speckle(classes)
    after = speckle(regularise(classes, radius=1, min_pixels=5))
    assert before.share > 0.2 and after.share < before.share / 5
    assert before.small_patches > 1000
    # what can stay below 5 px: islands in no-data only
    assert after.small_patches < before.small_patches / 50
    assert before.valid_pixels == after.valid_pixels == int((classes != ND).sum())
    src = write_map(tmp_path / "vote.tif", classes)
    assert speckle_file(src, block_size=64) == before  # blockwise counting, same figures


def test_speckle_figures_of_a_hand_built_map() -> None:
    a = np.ones((5, 5), np.uint8)
    a[1, 1] = 2
    a[3, 3] = ND
    s = speckle(a, min_pixels=2)
    assert (s.valid_pixels, s.off_majority, s.small_patches) == (24, 1, 1)
    assert s.share == pytest.approx(1 / 24)
    assert s.as_dict()["share"] == round(1 / 24, 6)


# -- units and arguments ---------------------------------------------------------------------


def test_hectares_to_pixels() -> None:
    # 0.5 ha on 30 m pixels (900 m2) is 5.6 px: a patch needs 6 px to stay
    assert hectares_to_pixels(0.5, crs="EPSG:32613", transform=TRANSFORM) == 6
    ten = Affine(10.0, 0.0, 0.0, 0.0, -10.0, 0.0)
    assert hectares_to_pixels(1, crs="EPSG:32613", transform=ten) == 100  # exactly 100
    assert hectares_to_pixels(0.001, crs="EPSG:32613", transform=ten) == 1
    with pytest.raises(ConfigError, match=r"min_hectares needs a projected CRS.*EPSG:4326"):
        hectares_to_pixels(1, crs="EPSG:4326", transform=ten, key="min_hectares")
    with pytest.raises(ConfigError, match=r"hectares=0 is not an area > 0"):
        hectares_to_pixels(0, crs="EPSG:32613", transform=ten)
    with pytest.raises(ConfigError, match="needs a map with a CRS"):
        hectares_to_pixels(1, crs=None, transform=ten)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"radius": 0}, r"^radius=0 is not a whole number of pixels >= 1: use 1 or more"),
        ({"radius": 1.5}, r"^radius=1.5 is not a whole number"),
        ({"radius": True}, r"^radius=True is not"),
        ({"min_pixels": 0}, r"^min_pixels=0 is not a whole number.*skip the sieve$"),
        ({"connectivity": 6}, r"^connectivity=6 is unknown: use 4 \(edges\) or 8"),
    ],
)
def test_bad_settings_are_one_line_config_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        check_settings(**kwargs)
    assert "\n" not in str(err.value)


def test_bad_maps_and_paths(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pass a 2-D class map"):
        majority_filter(np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(ConfigError, match="pass a 2-D class map"):
        sieve(np.zeros((3, 3), np.float32), min_pixels=2)
    src = write_map(tmp_path / "vote.tif", noisy_map(20, 20))
    with pytest.raises(InputFileError, match=r"path=.*missing.tif does not exist"):
        regularise_file(tmp_path / "missing.tif", tmp_path / "o.tif", radius=1)
    with pytest.raises(ConfigError, match="is the input map"):
        regularise_file(src, src, radius=1)
    with pytest.raises(ConfigError, match="nothing to apply"):
        regularise_file(src, tmp_path / "o.tif")
    with pytest.raises(ConfigError, match=r"^halo=0 is not a whole number >= 1"):
        regularise_file(src, tmp_path / "o.tif", min_pixels=3, halo=0)
    foreign = tmp_path / "notes.tif"
    foreign.write_text("mine")
    with pytest.raises(OutputError, match=r"refusing to replace out=.*notes.tif"):
        regularise_file(src, foreign, radius=1)
    assert foreign.read_text() == "mine"


def test_real_rmnp_band_as_classes(rmnp: Path, tmp_path: Path) -> None:
    """The red band of RMNP (EPSG:4326) binned into 8 classes: blockwise equals whole."""
    with rasterio.open(rmnp / "red.tif") as src:
        red, crs, transform = src.read(1), src.crs, src.transform
    classes = np.where(red == ND, ND, red // 32).astype(np.uint8)
    path = write_geotiff(
        tmp_path / "red_classes.tif",
        classes,
        crs=crs,
        transform=transform,
        nodata=ND,
        tags={"geoensemble_output": "map"},
    )
    res = regularise_file(path, tmp_path / "out.tif", radius=1, min_pixels=8, block_size=100)
    with rasterio.open(res.path) as out:
        got = out.read(1)
        assert out.crs == crs
    assert np.array_equal(got, regularise(classes, radius=1, min_pixels=8))
    assert res.after.share < res.before.share
    with pytest.raises(ConfigError, match="projected CRS"):
        hectares_to_pixels(1, crs=crs, transform=transform)
