"""Predict benchmark: geoensemble's predict stage against the floor and the notebook way.

Builds a Landsat-like scene of 6 uint16 bands (tiled LZW GeoTiffs, nodata 0 outside a tilted
footprint), fits a K-Means (8 clusters) and a 50-tree random forest on a sample, registers
both in a SQLite MLflow store, then times whole processes (start to exit, imports included)
in interleaved rounds with :mod:`harness`. The variants (printed with the figures):

- ``stage``: ``python pipelines/predict.py --params ...`` with the default outputs (COG with
  overviews, a max-probability map for the forest, PNG quicklook, the MLflow predict run)
  except the regularised copy of the map, which neither the floor nor the notebook makes;
- ``stage-lean``: the same with ``predict=lean`` (class map only, no overviews, no
  quicklook; still the MLflow run);
- ``floor``: read every band whole (GDAL threads on), ``predict`` the valid pixels as one
  array on every core (forest ``n_jobs`` = cores), write the class map as a tiled LZW uint8
  GeoTiff with nodata and colour table (what ``stage-lean`` writes, less the MLflow run);
- ``notebook``: what the classic notebook does, nothing more: a float32 pandas frame of
  every pixel, per-column median fill, ``predict`` on 50,000-row chunks, predicted labels
  mapped to class indices with a Python list lookup per pixel, masking, an LZW uint8 write.

Targets (issue 22, which kept issue 16's start-up budget; the times are only as good as the
machine is quiet): K-Means stage <= 1.0x floor, forest stage <= 0.8x floor, stage peak RSS
<= 500 MB at 21 Mpx and flat at 4x (``--grow``).

    python benchmarks/predict_benchmark.py [--mpx 21] [--repeats 3] [--grow]
        [--models kmeans,forest] [--work DIR]

``--members 1,3,8`` instead measures peak memory as the number of members grows (issue 25):
it registers 8 K-Means members (seeds 0-7, versions 1-8 of ``bench_members``) and runs the
stage with the first N of them (``predict.model_uri`` + ``predict.models``) and every default
output: a map per member, vote, agreement, COG overviews, quicklooks, the regularised map
and the class map; with ``--grow`` also on the 4x scene. Target: peak RSS < 500 MB for
every N at 21 Mpx and at 4x.

    python benchmarks/predict_benchmark.py --members 1,3,8 [--mpx 21] [--grow]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

from geoensemble.clock import process_age

BANDS = [f"B{i}" for i in range(1, 7)]
ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- scene
def write_scene(folder: Path, side: int, seed: int = 0) -> np.ndarray:
    """Six LZW uint16 bands of ``side`` x ``side`` px, written strip by strip; returns a
    training sample of valid pixels (every 40th row)."""
    import rasterio

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, (len(BANDS), 4))
    prof = harness.scene_profile(side)
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


def register_members(X: np.ndarray, work: Path, n: int) -> None:
    """``n`` K-Means (8 clusters, seeds 0..n-1) as versions 1..n of ``bench_members``."""
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(2)
    X = X[rng.permutation(len(X))[:30_000]]
    for seed in range(n):
        km = KMeans(8, n_init=1, random_state=seed).fit(X)
        harness.register_champion(work, km, "bench_members", BANDS)


def member_variant(work: Path, scene: str, n: int, mpx: float) -> harness.Variant:
    """The stage with the first ``n`` members and every default output."""
    uris = [f"models:/bench_members/{v}" for v in range(1, n + 1)]
    extra = [f"predict.model_uri={uris[0]}", f"predict.models=[{','.join(uris[1:])}]"]
    params = stage_params(work, work / scene, "members", f"m{n}", extra)
    return harness.Variant(
        f"{n}-member{'s' if n > 1 else ''}-{mpx:.0f}Mpx",
        f"python pipelines/predict.py, {n} K-Means member(s), default outputs (a map per "
        "member, vote, agreement, COG overviews, quicklooks, regularised map, class map)",
        [harness.python(), str(ROOT / "pipelines" / "predict.py"), "--params", str(params)],
        {"GEOENSEMBLE_ROOT": str(work), "PYTHONWARNINGS": "ignore"},
        str(work),
    )


def run_members(args: argparse.Namespace, work: Path) -> None:
    """Peak RSS of the stage with N members at the scene's size (and 4x with ``--grow``)."""
    counts = [int(n) for n in args.members.split(",")]
    side = max(512, round(float(np.sqrt(args.mpx * 1e6))))
    X = write_scene(work / "scene", side)
    register_members(X, work, max(counts))
    scenes = [("scene", side * side / 1e6)]
    if args.grow:
        write_scene(work / "scene4x", 2 * side, seed=1)
        scenes.append(("scene4x", 4 * side * side / 1e6))
    out = {}
    for scene, mpx in scenes:
        vs = [member_variant(work, scene, n, mpx) for n in counts]
        harness.print_definitions(f"predict, members, {mpx:.1f} Mpx", vs)
        sums = harness.report(harness.interleaved(vs, repeats=args.repeats))
        for name, s in sums.items():
            ok = "met" if s.peak_rss_mb < 500 else "NOT met"
            print(f"  target {name} peak RSS < 500 MB: {s.peak_rss_mb:.0f} MB ({ok})")
        out[scene] = {k: vars(v) for k, v in sums.items()}
    (work / "members.json").write_text(json.dumps(out, indent=2, default=str))


def register(paths: dict[str, Path], work: Path) -> None:
    """Each model as version 1 (alias champion) of ``bench_<name>`` in ``work/mlflow.db``."""
    import joblib

    for name, p in paths.items():
        harness.register_champion(work, joblib.load(p), f"bench_{name}", BANDS)


# --------------------------------------------------------------------------- variants
#: GDAL's own threads for (de)compression, as the stage sets them (predict/writer.py).
GDAL_THREADS = {"GDAL_NUM_THREADS": "ALL_CPUS", "GDAL_CACHEMAX": 256}


def phases_line(phases: dict[str, float]) -> None:
    """The floor and the notebook report their phases as the stage does."""
    print(harness.PHASES_MARK + json.dumps({k: round(v, 3) for k, v in phases.items()}))


def floor(work: Path, scene: Path, model: str) -> None:
    """Read whole, predict the valid pixels in one call on every core, write."""
    age = process_age()
    t0 = time.perf_counter()
    import joblib
    import rasterio

    phases = {"startup": age, "imports": time.perf_counter() - t0}
    t = time.perf_counter()
    est = joblib.load(work / f"{model}.joblib")
    phases["models"] = time.perf_counter() - t
    t = time.perf_counter()
    if hasattr(est, "n_jobs"):
        est.set_params(n_jobs=os.cpu_count())  # every core, as the stage's threads
    with rasterio.Env(**GDAL_THREADS):
        layers = []
        for b in BANDS:
            with rasterio.open(scene / f"{b}.TIF") as src:
                a = src.read(1)
                prof = src.profile
            layers.append(a)
        cube = np.stack(layers)
        del layers
        mask = (cube != 0).all(axis=0)
        table = cube[:, mask].T.astype(np.float32)
        del cube
        phases["read"] = time.perf_counter() - t
        t = time.perf_counter()
        pred = est.predict(table)
        phases["predict"] = time.perf_counter() - t
        t = time.perf_counter()
        out = np.full(mask.shape, 255, np.uint8)
        out[mask] = pred
        prof.update(dtype="uint8", nodata=255, compress="lzw", predictor=1, count=1)
        with rasterio.open(work / f"floor_{model}.tif", "w", **prof) as dst:
            dst.write_colormap(1, {i: (40 * i % 256, 80 * i % 256, 120) for i in range(16)})
            dst.write(out, 1)
        phases["write"] = time.perf_counter() - t
    phases_line(phases)


def notebook(work: Path, scene: Path, model: str) -> None:
    """The classic notebook, step by step, and nothing more."""
    age = process_age()
    t0 = time.perf_counter()
    import joblib
    import pandas as pd
    import rasterio

    phases = {"startup": age, "imports": time.perf_counter() - t0}
    t = time.perf_counter()
    est = joblib.load(work / f"{model}.joblib")
    phases["models"] = time.perf_counter() - t
    t = time.perf_counter()
    bands = {}
    for b in BANDS:
        with rasterio.open(scene / f"{b}.TIF") as src:
            a = src.read(1).astype(np.float32)
            a[a == src.nodata] = np.nan
            prof = src.profile
        bands[b] = a
    shape = bands[BANDS[0]].shape
    df = pd.DataFrame({b: a.ravel() for b, a in bands.items()})  # float32 columns
    del bands
    phases["read"] = time.perf_counter() - t
    t = time.perf_counter()
    nodata = df.isna().any(axis=1).to_numpy()
    df = df.fillna(df.median())
    preds = [est.predict(df.iloc[i : i + 50_000].to_numpy()) for i in range(0, len(df), 50_000)]
    pred = np.concatenate(preds)
    classes = list(est.classes_) if hasattr(est, "classes_") else list(range(est.n_clusters))
    mapped = np.array([classes.index(c) for c in pred], dtype=np.uint8)
    mapped[nodata] = 255
    phases["predict"] = time.perf_counter() - t
    t = time.perf_counter()
    prof.update(dtype="uint8", nodata=255, compress="lzw", count=1)
    prof.pop("predictor", None)
    with rasterio.open(work / f"notebook_{model}.tif", "w", **prof) as dst:
        dst.write(mapped.reshape(shape), 1)
    phases["write"] = time.perf_counter() - t
    phases_line(phases)


def stage_params(work: Path, scene: Path, model: str, name: str, extra: list[str]) -> Path:
    """The composed config of one stage variant, as ``dvc repro`` passes it."""
    from omegaconf import OmegaConf

    from geoensemble.app.params import compose
    from geoensemble.app.validate import validate

    raw = compose(
        [
            f"features.bands=[{','.join(BANDS)}]",
            "features.indices=[]",
            f"tracking.uri=sqlite:///{work}/mlflow.db",
            f"tracking.model_name=bench_{model}",
            f"predict.output_dir={work}/maps_{name}",
            "predict.overwrite=true",
            "predict.progress=false",
            f"+predict.scenes=[{{name: {scene.name}, format: geotiff_dir, path: '{scene}', "
            "pattern: 'B*.TIF'}]",
            *extra,
        ],
        config_dir=ROOT / "conf",
    )
    validate(raw)
    path = work / f"params_{model}_{name}_{scene.name}.yaml"
    OmegaConf.save(raw, path, resolve=True)
    return path


def variants(work: Path, scene: Path, model: str) -> list[harness.Variant]:
    env = {"GEOENSEMBLE_ROOT": str(work), "PYTHONWARNINGS": "ignore"}
    stage = [harness.python(), str(ROOT / "pipelines" / "predict.py"), "--params"]
    me = [harness.python(), __file__, "--work", str(work), "--scene", str(scene)]
    me += ["--model", model, "--child"]
    return [
        harness.Variant(
            "stage",
            "python pipelines/predict.py, default outputs (COG + overviews, max-probability "
            "map if the model has predict_proba, PNG quicklook, MLflow predict run) but no "
            "regularised copy (predict.regularise.enabled=false: floor and notebook make none)",
            [
                *stage,
                str(
                    stage_params(work, scene, model, "stage", ["predict.regularise.enabled=false"])
                ),
            ],
            env,
            str(work),
        ),
        harness.Variant(
            "stage-lean",
            "the same with predict=lean (predict.overviews=false predict.quicklook=false "
            "predict.outputs.max_probability=false): class map only, MLflow run kept",
            [*stage, str(stage_params(work, scene, model, "lean", ["predict=lean"]))],
            env,
            str(work),
        ),
        harness.Variant(
            "floor",
            "read every band whole (GDAL_NUM_THREADS=ALL_CPUS), predict the valid pixels as "
            f"one array on every core (forest n_jobs={os.cpu_count()}), write a tiled LZW "
            "uint8 GeoTiff with nodata and colour table (what stage-lean writes, no MLflow)",
            [*me, "floor"],
            env,
        ),
        harness.Variant(
            "notebook",
            "float32 pandas frame of every pixel, per-column median fill, predict on "
            "50,000-row chunks, labels mapped to class indices by a Python list lookup per "
            "pixel, masking, LZW uint8 write (the classic notebook, nothing more)",
            [*me, "notebook"],
            env,
        ),
    ]


TARGETS = {
    "kmeans": {"stage/floor": 1.0},
    "forest": {"stage/floor": 0.8},
}
RSS_TARGET_MB = 500


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--mpx", type=float, default=21.0, help="scene size in megapixels")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--grow", action="store_true", help="also run the stage at 4x the scene")
    ap.add_argument("--models", default="kmeans,forest")
    ap.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--members", default=None, help="member counts, e.g. 1,3,8")
    ap.add_argument("--child", choices=["floor", "notebook"])
    ap.add_argument("--scene")
    ap.add_argument("--model")
    args = ap.parse_args()
    if args.child:
        fn = floor if args.child == "floor" else notebook
        fn(Path(args.work), Path(args.scene), args.model)
        return
    if args.work is None:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="predict-bench-") as tmp:
            run(args, Path(tmp))
    else:
        work = Path(args.work).resolve()
        work.mkdir(parents=True, exist_ok=True)
        run(args, work)


def run(args: argparse.Namespace, work: Path) -> None:
    if args.members:
        run_members(args, work)
        return
    side = max(512, round(float(np.sqrt(args.mpx * 1e6))))
    t = time.perf_counter()
    X = write_scene(work / "scene", side)
    paths = fit_models(X, work)
    register(paths, work)
    print(
        f"scene {side} x {side} = {side * side / 1e6:.1f} Mpx x {len(BANDS)} uint16 bands; "
        f"models fitted and registered in {time.perf_counter() - t:.0f} s (not timed)"
    )
    out: dict[str, object] = {}
    for model in args.models.split(","):
        vs = variants(work, work / "scene", model)
        harness.print_definitions(f"predict, {model}", vs)
        runs = harness.interleaved(vs, repeats=args.repeats)
        sums = harness.report(
            runs,
            ratios=[
                ("stage / floor", "stage", "floor"),
                ("stage-lean / floor", "stage-lean", "floor"),
                ("notebook / stage", "notebook", "stage"),
            ],
        )
        for label, target in TARGETS.get(model, {}).items():
            a, b = label.split("/")
            r = sums[a].seconds / sums[b].seconds
            print(f"  target {label} <= {target}: {r:.2f} ({'met' if r <= target else 'NOT met'})")
        rss = sums["stage"].peak_rss_mb
        ok = "met" if rss <= RSS_TARGET_MB else "NOT met"
        print(f"  target stage peak RSS <= {RSS_TARGET_MB} MB: {rss:.0f} MB ({ok})")
        out[model] = {k: vars(v) for k, v in sums.items()}
    if args.grow:
        model = args.models.split(",")[0]
        write_scene(work / "scene4x", 2 * side, seed=1)
        grow = [
            harness.Variant(
                f"stage-{n}",
                f"the stage variant on the {n} scene ({m * side * side / 1e6:.0f} Mpx)",
                [
                    harness.python(),
                    str(ROOT / "pipelines" / "predict.py"),
                    "--params",
                    str(stage_params(work, work / sc, model, "stage", [])),
                ],
                {"GEOENSEMBLE_ROOT": str(work)},
                str(work),
            )
            for n, sc, m in (("1x", "scene", 1), ("4x", "scene4x", 4))
        ]
        harness.print_definitions(f"predict, {model}, memory as the scene grows 4x", grow)
        sums = harness.report(
            harness.interleaved(grow, repeats=max(1, args.repeats // 2)),
            ratios=[("time 4x / 1x", "stage-4x", "stage-1x")],
        )
        rss = sums["stage-4x"].peak_rss_mb / sums["stage-1x"].peak_rss_mb
        print(f"  peak RSS 4x / 1x: {rss:.2f}x (flat: about 1)")
        out["grow"] = {k: vars(v) for k, v in sums.items()}
    (work / "results.json").write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
