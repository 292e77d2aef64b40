"""Aligned cluster codes before vote and agreement; clusters named after the truth class they
mostly hold, in that class's colour; colours fixed per class name."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import rasterio

from geoensemble import plots
from geoensemble.app import stages
from geoensemble.app.config import PredictOutputsConfig, TrackingConfig
from geoensemble.classes import (
    CLUSTER_PALETTE,
    KNOWN_COLOURS,
    MATCH_SHARE,
    NEUTRAL_GREY,
    class_colour,
    class_colours,
    match_clusters,
    neutral_greys,
)
from geoensemble.io.geotiff import write_geotiff
from geoensemble.io.stack import write_store
from geoensemble.predict import BlockPredictor, ClassScheme, LoadedMember, output_keys
from geoensemble.predict.combine import align_clusters
from tests.predict.conftest import NAMES, TRANSFORM, fit_kmeans, make_scene, register, valid_table


def permuted(pipeline: object, perm: list[int]) -> object:
    """A copy of a K-Means pipeline whose cluster ``perm[c]`` is the original cluster ``c``."""
    other = copy.deepcopy(pipeline)
    km = other[-1]  # type: ignore[index]
    centres = km.cluster_centers_.copy()
    km.cluster_centers_[perm] = centres
    return other


# ------------------------------------------------------------------------- alignment
def test_align_clusters_by_hand_keeps_extra_clusters_apart() -> None:
    ref = np.array([0, 0, 1, 1, 2, 2])
    same = np.array([2, 2, 0, 0, 1, 1])  # a permutation: 2 -> 0, 0 -> 1, 1 -> 2
    more = np.array([1, 1, 0, 3, 2, 2])  # 4 clusters: 3 has no partner
    also = np.array([0, 0, 1, 1, 2, 4])  # 5 clusters, 3 never seen, 4 left over
    lookups = align_clusters([ref, same, more, also], [3, 3, 4, 5])
    np.testing.assert_array_equal(lookups[0], [0, 1, 2])
    np.testing.assert_array_equal(lookups[1], [1, 2, 0])
    np.testing.assert_array_equal(lookups[2], [1, 0, 2, 3])
    # Every member's left-over clusters get their own codes: they never vote together.
    np.testing.assert_array_equal(lookups[3], [0, 1, 2, 4, 5])
    scheme = ClassScheme.of(
        [LoadedMember(f"m{i}", fit_kmeans(NAMES, 3), NAMES, f"t:{i}") for i in range(4)],
        recode=lookups,
    )
    assert scheme.names == [f"cluster {i}" for i in range(6)]
    np.testing.assert_array_equal(scheme.positions(same, 1), ref)


def test_permuted_kmeans_members_agree_fully_after_alignment(tmp_path: Path) -> None:
    est = fit_kmeans(NAMES, 5)
    twin = permuted(est, [3, 0, 4, 1, 2])
    X, _ = valid_table(make_scene(), NAMES)
    ref, other = est.predict(X), twin.predict(X)  # type: ignore[attr-defined]
    assert (ref != other).mean() > 0.5  # the codes really differ
    np.testing.assert_array_equal(np.array([3, 0, 4, 1, 2])[ref], other)
    members = [LoadedMember("a", est, NAMES, "t:a"), LoadedMember("b", twin, NAMES, "t:b")]
    keys = output_keys(members, PredictOutputsConfig())
    unaligned = BlockPredictor(members, NAMES, ClassScheme.of(members), keys)
    assert (unaligned.predict_table(X)["agreement"] < 100).mean() > 0.5

    lookups = align_clusters([ref, other], [5, 5])
    np.testing.assert_array_equal(lookups[1], [1, 3, 4, 0, 2])
    pred = BlockPredictor(members, NAMES, ClassScheme.of(members, recode=lookups), keys)
    out = pred.predict_table(X)
    assert (out["agreement"] == 100).all()
    np.testing.assert_array_equal(out["vote"], ref)
    np.testing.assert_array_equal(out["member:1"], ref)  # member maps in the shared codes


# ------------------------------------------------------------------------- colours
def test_colours_are_fixed_per_class_name() -> None:
    assert class_colour("water") == KNOWN_COLOURS["water"] == class_colour("Open_Water")
    assert class_colour("Built-up") == class_colour("built_up") == class_colour("developed")
    assert class_colour("snow") != class_colour("water")
    assert class_colour("deciduous forest") != class_colour("forest")
    assert class_colour("Evergreen-Forest") == KNOWN_COLOURS["evergreen forest"]
    # Not a known name: a palette colour from SHA-256, the same in any process.
    code = "from geoensemble.classes import class_colour; print(class_colour('quarry'))"
    seen = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert seen == {str(class_colour("quarry"))}
    assert class_colour("quarry") in CLUSTER_PALETTE
    # Within one map every class has its own colour, whatever order the names come in.
    names = ["forest", "Forest", "class 1", "class 2", "class 3", "class 4", "class 5"]
    cols = class_colours(names)
    assert len(set(cols)) == len(names)
    assert dict(zip(names, cols, strict=True)) == dict(
        zip(names[::-1], class_colours(names[::-1]), strict=True)
    )


def test_clusters_are_named_after_their_majority_class_by_hand() -> None:
    # cluster 0: 9 water + 1 snow; 1: 6 snow + 4 water; 2: 10 water; 3: 4/3/3 (no majority);
    # 4: no reference pixel at all.
    clusters = np.repeat([0, 1, 2, 3], 10)
    ref = np.array([0] * 9 + [1] + [1] * 6 + [0] * 4 + [0] * 10 + [0] * 4 + [1] * 3 + [2] * 3)
    m = match_clusters(clusters, ref, [0, 1, 2, 3, 4], {0: "water", 1: "snow", 2: "forest"})
    assert [x.name for x in m] == [
        "water (90 %)",
        "snow (60 %)",
        "water (100 %)",
        "cluster 3",
        "cluster 4",
    ]
    assert [x.matched for x in m] == ["water", "snow", "water", None, None]
    assert m[3].majority == "water" and m[3].share == pytest.approx(0.4)
    assert m[3].share < MATCH_SHARE
    # The purest water cluster keeps water's colour, the other is a shade of it.
    assert m[2].colour == class_colour("water") != m[0].colour
    assert m[1].colour == class_colour("snow")
    assert m[3].colour == NEUTRAL_GREY and [m[3].colour, m[4].colour] == neutral_greys(2)
    assert all(len(set(x.colour)) == 1 for x in m[3:])  # greys
    # Too few reference pixels: not named, however pure.
    few = match_clusters(np.zeros(5, int), np.zeros(5, int), [0], {0: "water"})
    assert few[0].name == "cluster 0"


# ------------------------------------------------------------------------- the stage
@pytest.fixture
def truth_project(tmp_path: Path, store: TrackingConfig) -> tuple[Path, object, np.ndarray]:
    """Features, and a truth raster on their grid where cluster 0 of the champion is water,
    1 snow, 2 forest and 3 a mix of three classes (40 % water: no majority)."""
    ds = make_scene(150, 170)
    write_store(ds, tmp_path / "features", meta={"feature_names": NAMES})
    est = fit_kmeans(NAMES, 4)
    X, mask = valid_table(ds, NAMES)
    pred = est.predict(X)  # type: ignore[attr-defined]
    truth = np.full(mask.shape, 255, dtype=np.uint8)
    by_cluster = np.array([0, 5, 1, 0])  # water, snow, forest; cluster 3 is mixed below
    codes = by_cluster[pred]
    mixed = np.flatnonzero(pred == 3)
    codes[mixed] = np.array([0, 0, 0, 0, 2, 2, 2, 4, 4, 4])[np.arange(mixed.size) % 10]
    truth[mask] = codes
    names = {0: "water", 1: "forest", 2: "cropland", 4: "built_up", 5: "snow"}
    (tmp_path / "raw/labels").mkdir(parents=True)
    write_geotiff(
        tmp_path / "raw/labels/truth.tif",
        truth,
        crs="EPSG:32613",
        transform=TRANSFORM,
        nodata=255,
        tags={f"CLASS_{k}": v for k, v in names.items()},
    )
    return tmp_path, est, pred


def test_cluster_maps_name_the_truth_classes_in_their_colours(truth_project, make_cfg, store):
    tmp_path, est, pred = truth_project
    twin = permuted(est, [2, 3, 0, 1])
    register(store, [est, twin], NAMES)
    out = stages.predict(make_cfg("predict=ensemble", "predict.progress=false"))
    maps = {k: Path(v) for k, v in out["scenes"]["synthetic"]["maps"].items()}
    want = {0: "water (100 %)", 1: "snow (100 %)", 2: "forest (100 %)", 3: "cluster 3"}
    colours = {
        0: class_colour("water"),
        1: class_colour("snow"),
        2: class_colour("forest"),
        3: NEUTRAL_GREY,
    }
    for key in ("vote", "member:0", "member:1"):
        with rasterio.open(maps[key]) as src:
            assert json.loads(src.tags()["class_names"]) == {str(k): v for k, v in want.items()}
            assert src.tags()["class_source"].startswith("truth ")
            assert {c: src.colormap(1)[c][:3] for c in want} == colours
        cats = Path(f"{maps[key]}.aux.xml").read_text()
        assert "<Category>water (100 %)</Category>" in cats
        assert 'label="snow (100 %)"' in maps[key].with_suffix(".qml").read_text()
        legend = plots.legend_of(maps[key].with_suffix(".png"))
        assert [e["name"] for e in legend] == list(want.values())
    _, mask = valid_table(make_scene(150, 170), NAMES)
    with rasterio.open(maps["vote"]) as v, rasterio.open(maps["agreement"]) as a:
        np.testing.assert_array_equal(v.read(1)[mask], pred)
        assert (a.read(1)[mask] == 100).all()
    with rasterio.open(maps["member:1"]) as src:
        np.testing.assert_array_equal(src.read(1)[mask], pred)  # aligned to the champion
    run = mlflow.MlflowClient().get_run(out["run_id"])
    assert json.loads(run.data.tags["class_names"]) == {str(k): v for k, v in want.items()}
    got = Path(mlflow.artifacts.download_artifacts(run_id=out["run_id"], dst_path=str(tmp_path)))
    legend = json.loads((got / "maps/legend.json").read_text())
    assert legend["match_rule"] == {"min_share": 0.5, "min_pixels": 10}
    mix = legend["clusters"][3]
    assert mix["class"] is None and mix["majority"] == "water" and 0.35 < mix["share"] < 0.45


def test_clusters_without_a_reference_keep_neutral_names(tmp_path, make_cfg, store):
    write_store(make_scene(), tmp_path / "features", meta={"feature_names": NAMES})
    register(store, [fit_kmeans(NAMES, 3)], NAMES)
    out = stages.predict(make_cfg("predict.progress=false"))  # no truth, no labels
    with rasterio.open(out["path"]) as src:
        assert json.loads(src.tags()["class_names"]) == {
            "0": "cluster 0",
            "1": "cluster 1",
            "2": "cluster 2",
        }
        assert src.tags()["class_source"] == "none"


def test_unnamed_clusters_get_clearly_distinct_colours() -> None:
    """Unnamed clusters were greys 18 levels apart (160 and 178 look the same): now up to four
    greys at least 64 levels apart, then muted palette colours, 16 of them at least 48 RGB
    units from each other and from the greys."""
    import itertools
    import math

    cols = neutral_greys(16)
    assert cols[:4] == [(160, 160, 160), (96, 96, 96), (224, 224, 224), (32, 32, 32)]
    assert all(len(set(c)) > 1 for c in cols[4:])  # colours, not more greys
    assert min(math.dist(a, b) for a, b in itertools.combinations(cols, 2)) >= 48
    assert neutral_greys(16) == cols  # deterministic
    assert len(set(neutral_greys(60))) == 60


def test_clusters_named_after_one_class_merge_into_a_class_map(truth_project, make_cfg, store):
    """Clusters 0 and 2 are both water: the class map has one water (their pixels), the
    shares recomputed over the merged clusters; the cluster map is left as it is."""
    tmp_path, est, pred = truth_project
    _, mask = valid_table(make_scene(150, 170), NAMES)
    codes = np.array([0, 5, 0, 1])[pred]  # water, snow, water, forest ...
    c3 = np.flatnonzero(pred == 3)
    codes[c3] = np.array([1] * 7 + [0] * 3)[np.arange(c3.size) % 10]  # ... 70 % forest
    truth = np.full(mask.shape, 255, dtype=np.uint8)
    truth[mask] = codes
    write_geotiff(
        tmp_path / "raw/labels/truth.tif",
        truth,
        crs="EPSG:32613",
        transform=TRANSFORM,
        nodata=255,
        tags={"CLASS_0": "water", "CLASS_1": "forest", "CLASS_5": "snow"},
    )
    register(store, [est], NAMES)
    out = stages.predict(make_cfg("predict.progress=false"))
    maps = {k: Path(v) for k, v in out["scenes"]["synthetic"]["maps"].items()}
    assert maps["classes"].name == "synthetic_geoensemble_champion_classes.tif"
    with rasterio.open(maps["classes"]) as src:
        arr, tags, cmap = src.read(1), src.tags(), src.colormap(1)
    assert json.loads(tags["merged_clusters"]) == {"forest": [3], "snow": [1], "water": [0, 2]}
    names = json.loads(tags["class_names"])
    assert names["1"] == "snow (100 %)" and names["2"] == "water (100 %)"
    assert re.fullmatch(r"forest \((6[6-9]|7[0-4]) %\)", names["0"]), names
    assert cmap[2][:3] == class_colour("water") and cmap[0][:3] == class_colour("forest")
    lut = np.array([2, 1, 2, 0])
    np.testing.assert_array_equal(arr[mask], lut[pred])  # water's pixels: clusters 0 and 2
    assert (arr[~mask] == 255).all()
    with rasterio.open(maps["member:0"]) as src:
        np.testing.assert_array_equal(src.read(1)[mask], pred)  # the cluster map stays


def test_each_map_names_its_clusters_by_its_own_shares(truth_project, make_cfg, store):
    """A 3-cluster member beside the 4-cluster champion: its map's names are its own
    clusters' shares against the truth, not the champion's (within the naming sample's
    error); the champion's map keeps its own."""
    tmp_path, est, _ = truth_project
    other = fit_kmeans(NAMES, 3, seed=1)
    register(store, [est, other], NAMES)
    out = stages.predict(make_cfg("predict=ensemble", "predict.progress=false"))
    maps = {k: Path(v) for k, v in out["scenes"]["synthetic"]["maps"].items()}
    with rasterio.open(tmp_path / "raw/labels/truth.tif") as src:
        truth = src.read(1)
    tags = {}
    for key in ("member:0", "member:1", "vote"):
        with rasterio.open(maps[key]) as src:
            tags[key] = (src.read(1), json.loads(src.tags()["class_names"]))
    assert tags["member:0"][1]["0"] == "water (100 %)"
    arr, names = tags["member:1"]
    differs = False
    for code, name in names.items():
        m = re.fullmatch(r"(\w+) \((\d+) %\)", name)
        if not m:
            continue
        ref = truth[(arr == int(code)) & (truth != 255)]
        share = 100 * np.bincount(ref).max() / ref.size  # the majority's share, whole map
        assert abs(int(m.group(2)) - share) <= 3, (code, name, share)
        differs |= name != tags["member:0"][1][code]
    assert differs  # the member's shares are not the champion's


def test_alignment_windows_are_whole_chunks_spread_over_the_scene() -> None:
    import dask.array as da
    import xarray as xr

    from geoensemble.predict.legend import spread_windows

    ds = xr.Dataset({"a": (("y", "x"), da.zeros((1000, 1000), chunks=100))})
    # 100 chunks, 4 fit in 40,000 px: the middle chunk of each quarter, in row-major order
    got = spread_windows(ds, ["a"], 40_000)
    cells = [(12 // 10, 12 % 10), (37 // 10, 37 % 10), (62 // 10, 62 % 10), (87 // 10, 87 % 10)]
    assert got == [(slice(r * 100, r * 100 + 100), slice(c * 100, c * 100 + 100)) for r, c in cells]
    assert spread_windows(ds, ["a"], 1_000_000) == []  # the whole scene fits: no windows
    edge = xr.Dataset({"a": (("y", "x"), da.zeros((250, 250), chunks=100))})
    assert spread_windows(edge, ["a"], 20_000)[-1] == (slice(200, 250), slice(0, 100))


def test_alignment_sample_is_drawn_from_the_windows_only(monkeypatch) -> None:
    import dask.array as da
    import xarray as xr

    from geoensemble.predict import legend

    # each pixel's value is its row * 1000 + col: the sample tells where it was drawn
    rows, cols = np.mgrid[0:400, 0:400]
    where = (rows * 1000 + cols).astype("f4")
    where[:100, :] = np.nan  # the first row of chunks holds no data
    ds = xr.Dataset({"p": (("y", "x"), da.from_array(where, chunks=100))})
    monkeypatch.setattr(legend, "ALIGN_READ_PIXELS", 40_000)
    monkeypatch.setattr(legend, "ALIGN_SAMPLE", 900)
    X = legend.alignment_sample(ds, ["p"])
    r, c = X[:, 0] // 1000, X[:, 0] % 1000
    # windows: chunks 2, 6, 10, 14 = (0, 2) empty, (1, 2), (2, 2), (3, 2): 225 pixels each
    assert len(X) == 3 * 225 and np.all((c >= 200) & (c < 300)) and np.all(r >= 100)
    assert len(np.unique(X[:, 0])) == len(X)
    np.testing.assert_array_equal(X, legend.alignment_sample(ds, ["p"]))  # seeded
