"""Blockwise prediction equals one in-memory ``model.predict`` on the same pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from hypothesis import given
from hypothesis import strategies as st

from geoensemble.app.config import PredictOutputsConfig
from geoensemble.predict import (
    BlockPredictor,
    ClassScheme,
    LoadedMember,
    output_keys,
    predict_scene,
)
from geoensemble.predict.blocks import block_edge, blocks
from tests.predict.conftest import NAMES, fit_forest, fit_kmeans, make_scene, valid_table

MODELS = {"kmeans": fit_kmeans(NAMES), "forest": fit_forest(NAMES)}


def run_scene(tmp_path: Path, ds, model, *, edge: int, threads: int) -> dict[str, Path]:
    members = [LoadedMember("m", model, list(NAMES), "test:m")]
    keys = output_keys(members, PredictOutputsConfig())
    pred = BlockPredictor(members, list(NAMES), ClassScheme.of(members), keys)
    paths = {k: tmp_path / f"{k.replace(':', '_')}.tif" for k in keys}
    summary = predict_scene(ds, pred, paths, block_size=edge, threads=threads)
    assert summary.pixels == ds.sizes["y"] * ds.sizes["x"]
    return summary.maps


@pytest.mark.parametrize("model", ["kmeans", "forest"])
@pytest.mark.parametrize(
    ("edge", "chunks", "threads"),
    [(16, None, 1), (48, 32, 2), (64, None, 2), (1024, 50, 2)],
)
def test_blockwise_map_equals_in_memory_predict(
    tmp_path: Path, model: str, edge: int, chunks: int | None, threads: int
) -> None:
    ds = make_scene(chunks=chunks)
    est = MODELS[model]
    X, mask = valid_table(ds, NAMES)
    expected = np.full(mask.shape, 255, dtype=np.uint8)
    expected[mask] = est.predict(X)
    if edge <= 64:  # the top 64 rows are no-data: whole blocks without a valid pixel
        empty = [b for b in blocks(*mask.shape, edge) if not mask[b.slices].any()]
        assert len(empty) >= mask.shape[1] // edge
    maps = run_scene(tmp_path, ds, est, edge=edge, threads=threads)
    with rasterio.open(maps["member:0"]) as src:
        got = src.read(1)
        assert src.dtypes[0] == "uint8" and src.nodata == 255
    np.testing.assert_array_equal(got, expected)
    if model == "forest":
        with rasterio.open(maps["max_probability"]) as src:
            maxp = src.read(1)
            assert src.scales == (0.01,)
        ref = np.full(mask.shape, 255, dtype=np.uint8)
        ref[mask] = np.rint(100 * est.predict_proba(X).max(axis=1)).astype(np.uint8)
        np.testing.assert_array_equal(maxp, ref)


def test_scene_without_any_valid_pixel_gives_an_all_nodata_map(tmp_path: Path) -> None:
    ds = make_scene(height=40, width=40)  # rows < 64 are all no-data
    maps = run_scene(tmp_path, ds, MODELS["kmeans"], edge=16, threads=2)
    with rasterio.open(maps["member:0"]) as src:
        assert (src.read(1) == 255).all()


@given(h=st.integers(1, 3000), w=st.integers(1, 3000), edge=st.sampled_from([16, 64, 512, 1024]))
def test_blocks_cover_the_scene_once_and_align_with_tiles(h: int, w: int, edge: int) -> None:
    bs = blocks(h, w, edge)
    assert sum(b.height * b.width for b in bs) == h * w
    assert all(b.row % edge == 0 and b.col % edge == 0 for b in bs)
    assert all(0 < b.height <= edge and 0 < b.width <= edge for b in bs)
    assert max(b.row + b.height for b in bs) == h and max(b.col + b.width for b in bs) == w


@pytest.mark.parametrize(("size", "edge"), [(64, 64), (512, 512), (700, 512), (1000, 1024)])
def test_block_edge_is_whole_tiles_from_512(size: int, edge: int) -> None:
    assert block_edge(size) == edge


def test_blocks_on_threads_hold_each_model_to_its_share_of_the_cores() -> None:
    """The one block mechanism of the stage and the API: while the blocks run, a K-Means
    fitted on 8 cores predicts on one thread per block thread; restored after, same labels."""
    import dask.array as da
    from sklearn.cluster import KMeans

    from geoensemble.predict import BlockPredictor, ClassScheme, LoadedMember
    from geoensemble.predict.blocks import predicted_blocks
    from geoensemble.predict.models import env_threads

    rng = np.random.default_rng(0)
    cube = rng.normal(size=(2, 600, 600)).astype(np.float32)
    km = KMeans(3, n_init=1, random_state=0).fit(cube.reshape(2, -1).T[:2000])
    km._n_threads = 8  # as if fitted on an 8-core machine
    m = LoadedMember("km", km, ["a", "b"], "test:km")
    predictor = BlockPredictor([m], ["a", "b"], ClassScheme.of([m]), ["member:0"])
    seen = []
    with predicted_blocks(
        predictor, da.from_array(cube, chunks=(2, 512, 512)), blocks(600, 600, 512), threads=2
    ) as results:
        for b, res in results:
            seen.append(km._n_threads)
            rows, cols = b.slices
            expected = km.predict(cube[:, rows, cols].reshape(2, -1).T)
            np.testing.assert_array_equal(res.arrays["member:0"].ravel(), expected)
    assert seen == [max(1, env_threads() // 2)] * 4
    assert km._n_threads == 8


def test_an_interruption_between_blocks_leaves_no_read_thread_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One block thread on a 4-core share: each block's layers are read on a pool of ours,
    joined when the blocks end, also on Ctrl-C (dask's own pools would outlive the stage and
    can keep an interrupted process from exiting)."""
    import threading

    import dask.array as da
    from sklearn.cluster import KMeans

    from geoensemble.predict import BlockPredictor, ClassScheme, LoadedMember
    from geoensemble.predict import blocks as blocks_mod

    monkeypatch.setattr(blocks_mod, "env_threads", lambda: 4)
    rng = np.random.default_rng(1)
    cube = rng.normal(size=(2, 300, 300)).astype(np.float32)
    km = KMeans(2, n_init=1, random_state=0).fit(cube.reshape(2, -1).T[:500])
    m = LoadedMember("km", km, ["a", "b"], "test:km")
    predictor = BlockPredictor([m], ["a", "b"], ClassScheme.of([m]), ["member:0"])
    arr = da.from_array(cube, chunks=(1, 100, 100))
    before = set(threading.enumerate())
    readers: set[str] = set()
    with pytest.raises(KeyboardInterrupt):
        with blocks_mod.predicted_blocks(predictor, arr, blocks(300, 300, 100), threads=1) as it:
            for n, (b, res) in enumerate(it):
                readers |= {t.name for t in set(threading.enumerate()) - before}
                rows, cols = b.slices
                expected = km.predict(cube[:, rows, cols].reshape(2, -1).T)
                np.testing.assert_array_equal(res.arrays["member:0"].ravel(), expected)
                if n == 2:
                    raise KeyboardInterrupt
    # (a pool's threads are named <prefix>_<n>; dask's own are ThreadPoolExecutor-<k>_<n>)
    assert readers and all(r.startswith("geoensemble-read_") for r in readers), readers
    assert set(threading.enumerate()) <= before


def _scene_from_files(tmp_path: Path):
    """A synthetic scene written as GeoTiffs and opened lazily, as the stage opens one."""
    from geoensemble.app.config import DataConfig, FeaturesConfig
    from geoensemble.features.build import build_features
    from geoensemble.io.stack import build_stack
    from geoensemble.synthetic import write_scene

    write_scene(tmp_path / "src", width=600, height=520, seed=3)
    data = DataConfig(name="s", format="geotiff_dir", path=str(tmp_path / "src/scene"))
    data.pattern = "B*.TIF"
    feats = FeaturesConfig()
    feats.bands = [f"B{i}" for i in range(1, 8)]
    feats.indices = []
    return build_features(build_stack(data), feats)


def test_distributed_workers_read_their_own_windows_and_write_the_threads_maps(
    tmp_path: Path,
) -> None:
    from distributed import Client, LocalCluster
    from sklearn.cluster import KMeans

    from geoensemble.predict.blocks import block_window, feature_array, ships_pixels, task_bytes

    ds = _scene_from_files(tmp_path)
    names = list(map(str, ds.data_vars))
    X, _ = valid_table(ds, names)
    est = KMeans(5, n_init=1, random_state=0).fit(X[::11])
    members = [LoadedMember("m", est, names, "test:m")]
    keys = output_keys(members, PredictOutputsConfig())
    pred = BlockPredictor(members, names, ClassScheme.of(members), keys)
    # a task carries where to read its block (files, windows), not the block's pixels
    window = block_window(feature_array(ds, names), blocks(520, 600, 512)[0])
    assert not ships_pixels(window)
    assert task_bytes(window) < window.array.nbytes / 10
    in_memory = block_window(feature_array(ds.load(), names), blocks(520, 600, 512)[0])
    assert ships_pixels(in_memory)

    def run(sub: str, **kw) -> dict[str, np.ndarray]:
        paths = {k: tmp_path / sub / f"{k.replace(':', '_')}.tif" for k in keys}
        s = predict_scene(ds, pred, paths, block_size=512, **kw)
        out = {}
        for k, p in s.maps.items():
            with rasterio.open(p) as src:
                out[k] = src.read()
        return out

    threads = run("threads", threads=2)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        dist = run("dist", client=client)
    assert threads.keys() == dist.keys() and threads
    for k in threads:
        np.testing.assert_array_equal(dist[k], threads[k])
    assert (threads["member:0"] != 255).sum() > 100_000


@pytest.mark.parametrize(
    ("size", "n", "edge"),
    [
        (1024, 6, 1024),
        (1024, 16, 1024),
        (1024, 32, 1024),
        (1024, 33, 512),
        (1024, 100, 512),
        (1024, 300, 256),
        (48, 100, 48),
    ],
)
def test_many_features_make_smaller_blocks(size: int, n: int, edge: int) -> None:
    from geoensemble.predict.blocks import BLOCK_FEATURE_BYTES, feature_block_edge

    got = feature_block_edge(size, n)
    assert got == edge
    assert got <= 128 or got * got * n * 4 <= BLOCK_FEATURE_BYTES
    assert 512 % got == 0 or got % 512 == 0 or got < 128


def test_large_blocks_run_on_fewer_threads() -> None:
    from geoensemble.predict.blocks import threads_for

    assert threads_for(1024, 6, 2) == 2  # 25 MB blocks: every core
    assert threads_for(1024, 6, 16) == 9  # at most 10 in flight
    assert threads_for(512, 100, 2) == 1  # 105 MB blocks: one at a time
    assert threads_for(512, 300, 4) == 1  # never below one


def test_blocks_are_never_smaller_than_the_features_chunks() -> None:
    import dask.array as da

    from geoensemble.predict.blocks import scene_block_edge

    chunked = da.zeros((6, 4096, 4096), chunks=(1, 1024, 1024), dtype="f4")
    assert scene_block_edge(chunked, 512) == 1024  # a 512 block would read its 1024 chunk
    assert scene_block_edge(da.zeros((6, 4096, 4096), chunks=(1, 512, 512)), 512) == 512
    assert scene_block_edge(da.zeros((6, 4096, 4096), chunks=(1, 512, 512)), 1024) == 1024
    assert scene_block_edge(np.zeros((6, 64, 64), "f4"), 48) == 48  # in memory: as asked
    # many features still make smaller blocks than the chunks (memory first)
    assert scene_block_edge(da.zeros((100, 2048, 2048), chunks=(1, 1024, 1024)), 512) == 512


#: Threads that read a layer window of :class:`_Layers` (module level: dask copies what it
#: is given by pickle, so a reader defined in the test would note into a copy).
_READ_THREADS: set[int] = set()
_CUBE = np.arange(6 * 96 * 80, dtype=np.float32).reshape(6, 96, 80)


class _Layers:
    """A lazy reader that notes the thread each layer window is read on."""

    shape, dtype, ndim = _CUBE.shape, _CUBE.dtype, 3

    def __getitem__(self, key):
        import threading

        _READ_THREADS.add(threading.get_ident())
        return _CUBE[key]


def test_a_block_read_on_spare_cores_equals_the_single_thread_read() -> None:
    import threading

    import dask.array as da

    from geoensemble.compute import joined_pool
    from geoensemble.predict.blocks import Block, read_block

    arr = da.from_array(_Layers(), chunks=(1, 96, 80), lock=False)
    block = Block(16, 8, 64, 40)
    _READ_THREADS.clear()
    one = read_block(arr, block)
    assert _READ_THREADS == {threading.get_ident()}  # in the calling thread
    _READ_THREADS.clear()
    with joined_pool(2, "test-read") as pool:
        two = read_block(arr, block, pool=pool)
    assert _READ_THREADS and threading.get_ident() not in _READ_THREADS  # on reading threads
    np.testing.assert_array_equal(one, _CUBE[:, 16:80, 8:48])
    np.testing.assert_array_equal(two, one)
