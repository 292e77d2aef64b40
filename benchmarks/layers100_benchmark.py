"""100 layers: the "apply a model to raster GIS data" notebook's case, end to end.

The notebook this project replaces applied a scikit-learn model trained elsewhere to 100
raster layers at 80 m, about 20 Mpx each. This benchmark generates such a stack (not
committed): ``--layers`` float32 GeoTiffs of ``--mpx`` megapixels each, tiled 512 x 512,
DEFLATE with the floating-point predictor, NaN outside a tilted footprint and in scattered
pixels, written strip by strip into the work folder (default: a temporary one). It fits an
external model on a sample of them (every 40th row; a ``SGDClassifier`` by default,
``--model forest`` for a 50-tree random forest of depth 12) on 6 classes drawn from the
layers, saves it with joblib (not timed), then times whole processes with :mod:`harness`:

- ``stage``: ``python pipelines/predict.py --params ...`` with ``predict.external`` (the
  joblib file, ``allow_pickle=true``, its 100 feature names), the scene as a
  ``geotiff_dir`` of the 100 layers, default outputs (a COG with overviews, the PNG
  quicklook, the regularised copy and the MLflow predict run), NaN filled with each layer's
  median (the external model's default NaN policy, as the notebook does);
- ``notebook``: the notebook's method and nothing more: every layer read whole into a
  float32 column of a pandas frame, per-column median fill, ``predict`` on 50,000-row
  chunks, NaN pixels set to no-data, one LZW uint8 GeoTiff written. Its frame alone is
  ``layers x pixels x 4`` bytes (8 GB at 100 x 20 Mpx): it is run only when that frame is
  at most ``--notebook-max-gb`` (default 2); otherwise its need is printed and it is not
  run.

It prints each variant's seconds, seconds per Mpx and peak RSS (target for the stage: under
1 GB at any size), and the ratio notebook / stage of whole-process times when both ran. On a
shared machine the times are rough; the peak RSS figures are the kernel's.

    python benchmarks/layers100_benchmark.py [--mpx 20] [--layers 100] [--model sgd]
        [--repeats 1] [--work DIR] [--notebook-max-gb 2]
    python benchmarks/layers100_benchmark.py --mpx 1     # a quick check
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

ROOT = Path(__file__).resolve().parents[1]
STRIP = 512


def names(n: int) -> list[str]:
    return [f"L{i:03d}" for i in range(n)]


def profile(side: int) -> dict[str, object]:
    """A tiled float32 GeoTiff, DEFLATE with the floating-point predictor, NaN no-data."""
    from rasterio.transform import from_origin

    return {
        "driver": "GTiff",
        "width": side,
        "height": side,
        "count": 1,
        "dtype": "float32",
        "crs": "EPSG:32613",
        "transform": from_origin(500_000, 4_500_000, 80.0, 80.0),
        "nodata": float("nan"),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "predictor": 3,
        "BIGTIFF": "IF_SAFER",
    }


def write_layers(folder: Path, side: int, layers: list[str], seed: int = 0) -> np.ndarray:
    """The layers strip by strip (memory: one strip of every layer); a training sample of
    the valid pixels (every 40th row), ``(n, layers)``."""
    import rasterio

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, (len(layers), 3))
    freq = rng.uniform(0.02, 0.2, (len(layers), 2))
    prof = profile(side)
    dsts = [rasterio.open(folder / f"{n}.tif", "w", **prof) for n in layers]
    sample = []
    try:
        for r0 in range(0, side, STRIP):
            rows = min(STRIP, side - r0)
            yy, xx = np.mgrid[r0 : r0 + rows, 0:side].astype(np.float32) / 50.0
            inside = (xx * 50 > 0.05 * side + 0.08 * yy * 50) & (
                xx * 50 < 0.97 * side - 0.03 * yy * 50
            )
            holes = rng.random((rows, side)) < 0.001
            cube = np.empty((len(layers), rows, side), np.float32)
            for i in range(len(layers)):
                a, b, c = phase[i]
                fy, fx = freq[i]
                v = np.sin(yy * fy + a) * np.cos(xx * fx + b) + 0.3 * np.sin((xx + yy) * 0.5 + c)
                v = v + rng.normal(0, 0.05, v.shape).astype(np.float32)
                v[~inside | holes] = np.nan
                cube[i] = v
                dsts[i].write(v, 1, window=((r0, r0 + rows), (0, side)))
            thin = cube[:, ::40].reshape(len(layers), -1).T
            sample.append(thin[~np.isnan(thin).any(axis=1)])
    finally:
        for d in dsts:
            d.close()
    return np.concatenate(sample)


def fit_model(X: np.ndarray, kind: str, out: Path) -> Path:
    """An external model on 6 classes (the argmax of 6 fixed projections of the layers)."""
    import joblib
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import SGDClassifier

    rng = np.random.default_rng(1)
    X = X[rng.permutation(len(X))[:40_000]]
    W = rng.normal(size=(X.shape[1], 6))
    y = np.argmax(X @ W, axis=1)
    if kind == "forest":
        est = RandomForestClassifier(50, max_depth=12, random_state=0).fit(X, y)
    else:
        est = SGDClassifier(random_state=0).fit(X, y)
    path = out / f"external_{kind}.joblib"
    joblib.dump(est, path)
    return path


def stage_params(work: Path, scene: Path, model: Path, layers: list[str]) -> Path:
    """The stage's composed config, as ``dvc repro`` passes it."""
    from omegaconf import OmegaConf

    from geoensemble.app.params import compose
    from geoensemble.app.validate import validate

    listed = ",".join(layers)
    raw = compose(
        [
            f"features.bands=[{listed}]",
            "features.indices=[]",
            f"tracking.uri=sqlite:///{work}/mlflow.db",
            f"predict.external.path={model}",
            "predict.external.allow_pickle=true",
            f"predict.external.feature_names=[{listed}]",
            f"predict.output_dir={work}/maps_stage",
            "predict.overwrite=true",
            "predict.progress=false",
            f"+predict.scenes=[{{name: layers, format: geotiff_dir, path: '{scene}', "
            "pattern: 'L*.tif'}]",
        ],
        config_dir=ROOT / "conf",
    )
    validate(raw)
    path = work / "params_layers.yaml"
    OmegaConf.save(raw, path, resolve=True)
    return path


def notebook(work: Path, scene: Path, model: Path, n_layers: int) -> None:
    """The notebook's method, step by step, and nothing more."""
    import joblib
    import pandas as pd
    import rasterio

    est = joblib.load(model)
    cols = {}
    for n in names(n_layers):
        with rasterio.open(scene / f"{n}.tif") as src:
            cols[n] = src.read(1)
            prof = src.profile
    shape = cols[names(n_layers)[0]].shape
    df = pd.DataFrame({n: a.ravel() for n, a in cols.items()})
    del cols
    nodata = df.isna().any(axis=1).to_numpy()
    df = df.fillna(df.median())
    preds = [est.predict(df.iloc[i : i + 50_000].to_numpy()) for i in range(0, len(df), 50_000)]
    out = np.concatenate(preds).astype(np.uint8)
    out[nodata] = 255
    prof.update(dtype="uint8", nodata=255, compress="lzw", count=1, predictor=1)
    with rasterio.open(work / "notebook.tif", "w", **prof) as dst:
        dst.write(out.reshape(shape), 1)


def run(args: argparse.Namespace, work: Path) -> None:
    side = max(512, round(float(np.sqrt(args.mpx * 1e6))))
    mpx = side * side / 1e6
    layers = names(args.layers)
    t = time.perf_counter()
    X = write_layers(work / "scene", side, layers)
    model = fit_model(X, args.model, work)
    on_disk = sum(p.stat().st_size for p in (work / "scene").glob("L*.tif")) / 1e9
    print(
        f"scene: {len(layers)} float32 layers x {side} x {side} = {mpx:.1f} Mpx each "
        f"({len(layers) * mpx * 4 / 1e3:.1f} GB as float32, {on_disk:.2f} GB on disk as "
        f"tiled DEFLATE); external {args.model} model fitted on {len(X)} sampled pixels; "
        f"{time.perf_counter() - t:.0f} s to generate (not timed)"
    )
    env = {"GEOENSEMBLE_ROOT": str(work), "PYTHONWARNINGS": "ignore"}
    params = stage_params(work, work / "scene", model, layers)
    vs = [
        harness.Variant(
            "stage",
            "python pipelines/predict.py with predict.external (joblib, 100 features), the "
            "layers as a geotiff_dir scene, default outputs (COG + overviews, quicklook, "
            "regularised copy, MLflow predict run), NaN filled with each layer's median",
            [harness.python(), str(ROOT / "pipelines" / "predict.py"), "--params", str(params)],
            env,
            str(work),
        )
    ]
    frame_gb = len(layers) * mpx * 4 / 1e3
    if frame_gb <= args.notebook_max_gb:
        me = [harness.python(), __file__, "--work", str(work), "--child", str(model)]
        vs.append(
            harness.Variant(
                "notebook",
                "every layer read whole into a float32 pandas column, median fill, predict on "
                "50,000-row chunks, NaN pixels no-data, LZW uint8 write (the notebook's method)",
                [*me, "--layers", str(args.layers)],
                env,
            )
        )
    else:
        print(
            f"notebook: not run: its frame alone needs {frame_gb:.1f} GB "
            f"(> --notebook-max-gb {args.notebook_max_gb}); run it at a smaller --mpx"
        )
    harness.print_definitions(f"{len(layers)} layers x {mpx:.1f} Mpx, {args.model}", vs)
    ratios = [("notebook / stage (whole processes)", "notebook", "stage")] if len(vs) > 1 else []
    sums = harness.report(harness.interleaved(vs, repeats=args.repeats), ratios=ratios)
    for s in sums.values():
        print(f"  {s.name}: {s.seconds / mpx:.2f} s per Mpx (x {len(layers)} layers)")
    ok = sums["stage"].peak_rss_mb < 1024
    print(
        f"  target stage peak RSS < 1 GB: {sums['stage'].peak_rss_mb:.0f} MB "
        f"({'met' if ok else 'NOT met'})"
    )
    (work / "layers100.json").write_text(
        json.dumps(
            {"mpx": mpx, "layers": len(layers), "variants": {k: vars(v) for k, v in sums.items()}},
            indent=2,
            default=str,
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--mpx", type=float, default=20.0, help="megapixels of each layer")
    ap.add_argument("--layers", type=int, default=100)
    ap.add_argument("--model", choices=["sgd", "forest"], default="sgd")
    ap.add_argument("--repeats", type=int, default=1, help="interleaved rounds")
    ap.add_argument("--notebook-max-gb", type=float, default=2.0)
    ap.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        notebook(Path(args.work), Path(args.work) / "scene", Path(args.child), args.layers)
        return
    if args.work is None:
        with tempfile.TemporaryDirectory(prefix="layers100-") as tmp:
            run(args, Path(tmp))
    else:
        work = Path(args.work).resolve()
        work.mkdir(parents=True, exist_ok=True)
        run(args, work)


if __name__ == "__main__":
    main()
