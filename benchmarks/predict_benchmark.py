"""Predict benchmark: geoensemble's predict stage against the floor and the notebook way.

Builds a Landsat-like scene of 6 uint16 bands (LZW GeoTiffs, nodata 0 outside a tilted
footprint), fits a K-Means and a 50-tree random forest on a sample, registers both in a
SQLite MLflow store, then times in the same run, each variant in its own process (so peak RSS
is its own):

(a) geoensemble: the predict stage on that scene (ingest + featurize in memory, blockwise
    prediction, COG + quicklook + MLflow predict run);
(b) the floor: read the bands, ``model.predict`` on the valid pixels as one array, write;
(c) the notebook way: a pandas frame of all pixels, median fill, ``predict`` in 50,000-row
    chunks, Python mapping of classes, rasterio write.

Targets: (a) <= 1.15x (b) for the forest and <= 1.5x for K-Means; (a) >= 3x faster than (c)
for K-Means; peak RSS of (a) < 1 GB and flat when the scene grows 4x (``--grow``).

    python benchmarks/predict_benchmark.py [--mpx 20] [--grow] [--models kmeans,forest]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BANDS = [f"B{i}" for i in range(1, 7)]
ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- scene
def write_scene(folder: Path, side: int, seed: int = 0) -> np.ndarray:
    """Six LZW uint16 bands of ``side`` x ``side`` px, written strip by strip; returns a
    training sample of valid pixels (every 40th row)."""
    import rasterio
    from affine import Affine

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, (len(BANDS), 4))
    prof = {
        "driver": "GTiff",
        "width": side,
        "height": side,
        "count": 1,
        "dtype": "uint16",
        "nodata": 0,
        "crs": "EPSG:32613",
        "transform": Affine(30, 0, 400_000, 0, -30, 4_500_000),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "lzw",
        "predictor": 2,
    }
    dsts = [rasterio.open(folder / f"{b}.TIF", "w", **prof) for b in BANDS]
    sample = []
    try:
        for r0 in range(0, side, 512):
            rows = min(512, side - r0)
            yy, xx = np.mgrid[r0 : r0 + rows, 0:side].astype(np.float32) / 97.0
            cover = (np.sin(yy * 0.7 + np.cos(xx * 0.3)) + np.cos(xx * 0.9 - yy * 0.2)) * 2
            footprint = (xx * 97 > 0.08 * side + 0.1 * yy * 97) & (
                xx * 97 < 0.95 * side + 0.02 * yy * 97
            )
            block = []
            for i in range(len(BANDS)):
                a, b, c, d = phase[i]
                v = 3000 + 900 * np.sin(yy * 0.11 * (i + 1) + a) * np.cos(xx * 0.07 + b)
                v += 700 * np.round(cover + np.sin(c)) + 250 * np.sin(xx * 1.3 + d)
                v += rng.normal(0, 60, v.shape)
                arr = np.clip(v, 1, 65000).astype(np.uint16)
                arr[~footprint] = 0
                dsts[i].write(arr, 1, window=((r0, r0 + rows), (0, side)))
                block.append(arr[::40])
            cube = np.stack(block).reshape(len(BANDS), -1)
            sample.append(cube[:, cube[0] > 0].T)
    finally:
        for d in dsts:
            d.close()
    return np.concatenate(sample).astype(np.float32)


def fit_models(X: np.ndarray, out: Path) -> dict[str, Path]:
    """K-Means (8 clusters) and a 50-tree random forest on the K-Means labels."""
    import joblib
    from sklearn.cluster import KMeans
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(1)
    X = X[rng.permutation(len(X))[:60_000]]
    km = KMeans(8, n_init=2, random_state=0).fit(X)
    rf = RandomForestClassifier(50, max_depth=12, random_state=0).fit(X, km.labels_)
    paths = {}
    for name, m in (("kmeans", km), ("forest", rf)):
        paths[name] = out / f"{name}.joblib"
        joblib.dump(m, paths[name])
    return paths


def register(paths: dict[str, Path], work: Path) -> None:
    """Each model as version 1 (alias champion) of ``bench_<name>`` in ``work/mlflow.db``."""
    import joblib

    from geoensemble import tracking
    from geoensemble.config import TrackingConfig

    os.environ["GEOENSEMBLE_ROOT"] = str(work)
    for name, p in paths.items():
        t = TrackingConfig(uri=f"sqlite:///{work}/mlflow.db", model_name=f"bench_{name}")
        exp = tracking.setup(t)
        model = joblib.load(p)
        with tracking.parent_run(exp, run_name=f"bench-{name}", params={}, tags={}) as parent:
            run = tracking.log_child_run(
                exp, parent, run_name="member-000", params={}, metrics={}, tags={}
            )
            v = tracking.log_model(
                run,
                model,
                feature_names=BANDS,
                example=np.ones((3, len(BANDS)), np.float32),
                model_name=t.model_name,
                tags={"ensemble_run_id": parent, "rank": "0"},
            )
        tracking.set_alias(t.model_name, "champion", v)


# --------------------------------------------------------------------------- variants
def read_cube(scene: Path) -> tuple[np.ndarray, dict]:
    import rasterio

    layers = []
    for b in BANDS:
        with rasterio.open(scene / f"{b}.TIF") as src:
            a = src.read(1).astype(np.float32)
            a[a == src.nodata] = np.nan
            prof = src.profile
        layers.append(a)
    return np.stack(layers), prof


def write_map(path: Path, arr: np.ndarray, prof: dict) -> None:
    import rasterio

    prof = {**prof, "dtype": "uint8", "nodata": 255, "compress": "lzw"}
    prof.pop("predictor", None)
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(arr, 1)


def variant_a(work: Path, scene: Path, model: str) -> None:
    from geoensemble import stages
    from geoensemble.config import DataConfig, validate
    from geoensemble.params import compose

    os.environ["GEOENSEMBLE_ROOT"] = str(work)
    cfg = validate(
        compose(
            [
                f"features.bands=[{','.join(BANDS)}]",
                "features.indices=[]",
                f"tracking.uri=sqlite:///{work}/mlflow.db",
                f"tracking.model_name=bench_{model}",
                f"predict.output_dir={work}/maps_a",
                "predict.overwrite=true",
                "predict.progress=false",
            ],
            config_dir=ROOT / "conf",
        )
    )
    cfg.predict.scenes = [
        DataConfig(name=f"bench_{model}", format="geotiff_dir", path=str(scene), pattern="B*.TIF")
    ]
    stages.predict(cfg)


def variant_b(work: Path, scene: Path, model: str) -> None:
    import joblib

    est = joblib.load(work / f"{model}.joblib")
    cube, prof = read_cube(scene)
    mask = ~np.isnan(cube).any(axis=0)
    pred = est.predict(np.ascontiguousarray(cube[:, mask].T))
    out = np.full(mask.shape, 255, np.uint8)
    out[mask] = pred
    write_map(work / f"floor_{model}.tif", out, prof)


def variant_c(work: Path, scene: Path, model: str) -> None:
    import joblib
    import pandas as pd

    est = joblib.load(work / f"{model}.joblib")
    cube, prof = read_cube(scene)
    shape = cube.shape[1:]
    df = pd.DataFrame({b: cube[i].ravel().astype(np.float64) for i, b in enumerate(BANDS)})
    del cube
    nodata = df.isna().any(axis=1).to_numpy()
    df = df.fillna(df.median())
    preds = []
    for i in range(0, len(df), 50_000):
        preds.append(est.predict(df.iloc[i : i + 50_000].to_numpy(dtype=np.float32)))
    pred = np.concatenate(preds)
    names = {int(c): int(c) + 1 for c in np.unique(pred)}  # e.g. cluster -> class code
    mapped = np.array([names[int(c)] - 1 for c in pred], dtype=np.uint8)
    mapped[nodata] = 255
    write_map(work / f"notebook_{model}.tif", mapped.reshape(shape), prof)


VARIANTS = {"a": variant_a, "b": variant_b, "c": variant_c}
# Imported before the clock starts: module import is a fixed per-process cost, reported
# apart as "startup"; store access and model loading stay inside (a)'s time.
IMPORTS = {
    "a": [
        "geoensemble.stages",
        "geoensemble.predict.run",
        "geoensemble.io.stack",
        "geoensemble.features.build",
        "mlflow.sklearn",
        "skops.io",
        "rioxarray",
        "dask.array",
        "matplotlib.pyplot",
        "sklearn.cluster",
        "sklearn.ensemble",
    ],
    "b": ["rasterio", "joblib", "sklearn.cluster", "sklearn.ensemble"],
    "c": ["rasterio", "joblib", "pandas", "sklearn.cluster", "sklearn.ensemble"],
}


def child(args: argparse.Namespace) -> None:
    import importlib

    t_start = time.perf_counter()
    for mod in IMPORTS[args.variant]:
        importlib.import_module(mod)
    t0 = time.perf_counter()
    VARIANTS[args.variant](Path(args.work), Path(args.scene), args.model)
    seconds = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "startup": t0 - t_start, "peak_rss_mb": rss_mb}))


def run_child(variant: str, work: Path, scene: Path, model: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "GEOENSEMBLE_ROOT": str(work)}
    cmd = [sys.executable, __file__, "--child", variant, "--work", str(work)]
    cmd += ["--scene", str(scene), "--model", model]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode:
        raise SystemExit(f"variant {variant} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mpx", type=float, default=20.0, help="scene size in megapixels")
    ap.add_argument("--grow", action="store_true", help="also run (a) on a 4x larger scene")
    ap.add_argument("--models", default="kmeans,forest")
    ap.add_argument("--work", default="benchmarks/.work")
    ap.add_argument("--child", dest="variant")
    ap.add_argument("--scene")
    ap.add_argument("--model")
    args = ap.parse_args()
    if args.variant:
        args.work = str(Path(args.work).resolve())
        child(args)
        return
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    side = int(np.sqrt(args.mpx * 1e6) // 512 * 512 + 512)
    t = time.perf_counter()
    X = write_scene(work / "scene", side)
    paths = fit_models(X, work)
    register(paths, work)
    print(f"scene {side} x {side} = {side * side / 1e6:.1f} Mpx x {len(BANDS)} bands, ", end="")
    print(f"models fitted and registered in {time.perf_counter() - t:.0f} s")
    results: dict[str, dict[str, dict[str, float]]] = {}
    for model in args.models.split(","):
        results[model] = {v: run_child(v, work, work / "scene", model) for v in "bac"}
        r = results[model]
        for v in "abc":
            print(
                f"{model:7s} ({v}) {r[v]['seconds']:7.2f} s  peak RSS {r[v]['peak_rss_mb']:6.0f} MB"
                f"  (imports {r[v]['startup']:.1f} s, not counted)"
            )
        print(
            f"{model:7s} (a)/(b) = {r['a']['seconds'] / r['b']['seconds']:.2f}x   "
            f"(c)/(a) = {r['c']['seconds'] / r['a']['seconds']:.2f}x"
        )
    if args.grow:
        big = 2 * side
        write_scene(work / "scene4x", big, seed=1)
        g = run_child("a", work, work / "scene4x", args.models.split(",")[0])
        a = results[args.models.split(",")[0]]["a"]
        print(
            f"4x scene ({big * big / 1e6:.0f} Mpx): (a) {g['seconds']:.2f} s, peak RSS "
            f"{g['peak_rss_mb']:.0f} MB ({g['peak_rss_mb'] / a['peak_rss_mb']:.2f}x the 1x scene)"
        )
    (work / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
