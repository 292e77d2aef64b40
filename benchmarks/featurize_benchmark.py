"""Featurize throughput (pixels/s) and peak memory against plain numpy, measured in one run.

A 7-band float32 stack (default 20 million pixels, 1024 x 1024 chunks, a no-data corner) is
written once as a Zarr store; then every variant runs in its own process so that its peak RSS
is its own:

- ``numpy``: read the seven bands into memory, compute NDWI, NDVI, NDSI and NBR with plain numpy
  expressions, write the 11 layers with the same Zarr writer (the baseline);
- ``numpy-indices``: only the index arithmetic of ``numpy`` on in-memory bands (timed alone);
- ``featurize``: what the featurize stage does: ``build_features`` on the lazily opened stack,
  written chunk by chunk;
- ``featurize-indices``: ``build_features`` on the in-memory bands (index arithmetic alone);
- ``featurize-512``: ``featurize`` reading 512 x 512 chunks, to show memory follows chunk size;
- ``imports``: the libraries alone, the RSS every variant starts from.

Usage::

    python benchmarks/featurize_benchmark.py                 # 20 Mpx, about 2 minutes
    python benchmarks/featurize_benchmark.py --pixels 2e6    # quick look

Ratios are ``throughput / numpy's throughput`` (>= 0.8 is the target).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7"]
INDICES = {  # Landsat 8: name -> (a, b) of (a - b) / (a + b)
    "ndwi": ("B3", "B5"),
    "ndvi": ("B5", "B4"),
    "ndsi": ("B3", "B6"),
    "nbr": ("B5", "B7"),
}


def make_stack(path: Path, pixels: float, chunk: int = 1024) -> tuple[int, int]:
    """A seeded 7-band stack of about ``pixels`` pixels (reflectance steps of 1e-4)."""
    import dask.array as da
    import xarray as xr
    from affine import Affine
    from rasterio.crs import CRS

    from geoensemble.io.stack import set_grid, write_store

    width = int(math.sqrt(pixels * 1.2))
    height = round(pixels / width)
    rs = da.random.RandomState(0)
    layers = {}
    for b in BANDS:
        arr = (rs.uniform(0.01, 0.6, (height, width), chunks=chunk) * 1e4).round() / 1e4
        arr = arr.astype(np.float32)
        yy = da.arange(height, chunks=chunk)[:, None]
        xx = da.arange(width, chunks=chunk)[None, :]
        arr = da.where(yy + xx < height // 4, np.float32(np.nan), arr)  # no-data corner
        layers[b] = xr.DataArray(arr, dims=("y", "x"))
    ds = set_grid(xr.Dataset(layers), CRS.from_epsg(32613), Affine(30, 0, 4e5, 0, -30, 4.5e6))
    write_store(ds, path)
    return height, width


def numpy_nd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The textbook expression, as an analyst writes it."""
    return (a - b) / (a + b)


def run_variant(name: str, stack: Path, out: Path) -> dict[str, float]:
    import xarray as xr

    from geoensemble.app.config import FeaturesConfig
    from geoensemble.features.build import build_features
    from geoensemble.io.stack import open_store, write_store

    fcfg = FeaturesConfig(bands=list(BANDS), indices=list(INDICES))
    if name == "imports":  # the RSS every variant starts from (libraries, no data)
        open_store(stack)
        return {"seconds": float("nan"), "pixels": 0, "peak_rss_mb": _peak_mb()}
    if name in {"numpy", "numpy-indices", "featurize-indices"}:
        t_read = time.perf_counter()
        src = open_store(stack)
        bands = {b: src[b].to_numpy() for b in BANDS}
        read_s = time.perf_counter() - t_read
        t0 = time.perf_counter()
        if name == "featurize-indices":
            ds = build_features(xr.Dataset({b: (("y", "x"), v) for b, v in bands.items()}), fcfg)
            feats = {n: ds[n].to_numpy() for n in INDICES}
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                feats = {n: numpy_nd(bands[a], bands[b]) for n, (a, b) in INDICES.items()}
        compute_s = time.perf_counter() - t0
        seconds = compute_s
        if name == "numpy":
            t1 = time.perf_counter()
            layers = {**bands, **feats}
            ds = xr.Dataset({n: (("y", "x"), v) for n, v in layers.items()}, attrs=src.attrs)
            write_store(ds, out)
            seconds = read_s + compute_s + time.perf_counter() - t1
        pixels = bands["B1"].size
    else:
        t0 = time.perf_counter()
        src = open_store(stack)
        if name == "featurize-512":
            src = src.chunk({"y": 512, "x": 512})
        write_store(build_features(src, fcfg), out)
        seconds = time.perf_counter() - t0
        pixels = int(src.sizes["y"] * src.sizes["x"])
    return {"seconds": seconds, "pixels": pixels, "peak_rss_mb": _peak_mb()}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pixels", type=float, default=20e6)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--stack", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.stack, args.out)))
        return

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        stack = Path(tmp) / "stack"
        t0 = time.perf_counter()
        h, w = make_stack(stack, args.pixels)
        print(
            f"stack: {h} x {w} = {h * w / 1e6:.1f} Mpx x {len(BANDS)} bands, chunks 1024 "
            f"(written in {time.perf_counter() - t0:.1f} s)"
        )
        results: dict[str, dict[str, float]] = {}
        for variant in [
            "numpy",
            "featurize",
            "featurize-512",
            "numpy-indices",
            "featurize-indices",
            "imports",
        ]:
            out = Path(tmp) / f"features-{variant}"
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--variant",
                    variant,
                    "--stack",
                    str(stack),
                    "--out",
                    str(out),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            results[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
            subprocess.run(["rm", "-rf", str(out)], check=False)
    print(f"{'variant':<20}{'seconds':>9}{'Mpx/s':>9}{'peak RSS MB':>13}{'ratio':>8}")
    base = {"numpy": "numpy", "featurize": "numpy", "featurize-512": "numpy"}
    imports = results.pop("imports")["peak_rss_mb"]
    for name, r in results.items():
        rate = r["pixels"] / r["seconds"]
        ref = results[base.get(name, "numpy-indices")]
        ratio = rate / (ref["pixels"] / ref["seconds"])
        print(
            f"{name:<20}{r['seconds']:>9.2f}{rate / 1e6:>9.2f}{r['peak_rss_mb']:>13.0f}"
            f"{ratio:>8.2f}"
        )
    print(
        "ratio: throughput / numpy's (end-to-end variants against 'numpy', index-only "
        "variants against 'numpy-indices'); target >= 0.8"
    )
    print(f"peak RSS of a process that only imports the libraries: {imports:.0f} MB")


if __name__ == "__main__":
    main()
