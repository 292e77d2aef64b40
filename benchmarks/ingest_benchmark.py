"""Ingest speed and peak memory against a plain rasterio read of the same files.

Writes ``--layers`` single-band uint16 GeoTiffs (tiled, LZW) of ``--mpx`` million pixels each,
then runs every variant in its own process (so peak RSS is that variant's alone):

- ``rasterio``: the notebook way, ``src.read(1)`` of every file into memory, as float32 with
  NaN for nodata (the baseline);
- ``ingest``: geoensemble's ingest (lazy read, one grid, float32 + NaN, chunked Zarr store and
  per-layer report in one pass);
- ``ingest_reproject``: the same with every layer resampled block by block onto a grid shifted
  by a third of a pixel (the worst case: nothing lines up).

It prints seconds, MB/s (uncompressed input bytes per second) and peak RSS per variant, and
their ratios to the baseline measured in the same run::

    python benchmarks/ingest_benchmark.py                 # 20 Mpx x 10 layers
    python benchmarks/ingest_benchmark.py --mpx 2 --layers 4
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

CRS = "EPSG:32613"
NODATA = 0


def write_inputs(folder: Path, *, mpx: float, layers: int) -> tuple[int, int]:
    """Single-band tiled LZW GeoTiffs, written block by block (not measured)."""
    side = round(math.sqrt(mpx * 1e6))
    folder.mkdir(parents=True, exist_ok=True)
    transform = Affine(30.0, 0, 400000.0, 0, -30.0, 4500000.0)
    rng = np.random.default_rng(0)
    for i in range(1, layers + 1):
        with rasterio.open(
            folder / f"B{i:02d}.tif",
            "w",
            driver="GTiff",
            width=side,
            height=side,
            count=1,
            dtype="uint16",
            crs=CRS,
            transform=transform,
            nodata=NODATA,
            tiled=True,
            blockxsize=512,
            blockysize=512,
            compress="lzw",
            predictor=2,
        ) as dst:
            for r in range(0, side, 2048):
                h = min(2048, side - r)
                y = np.arange(r, r + h)[:, None]
                x = np.arange(side)[None, :]
                block = (1000 + 500 * np.sin(x / 97.0 + i) * np.cos(y / 131.0)).astype("uint16")
                block += rng.integers(0, 50, block.shape, dtype="uint16")
                block[:, : side // 20] = NODATA  # a no-data margin
                dst.write(block, 1, window=Window(0, r, side, h))
    return side, side


def run_rasterio(folder: Path) -> dict[str, float]:
    """The baseline: read every file whole, float32 with NaN for nodata, kept in memory."""
    stack = {}
    for f in sorted(folder.glob("*.tif")):
        with rasterio.open(f) as src:
            a = src.read(1).astype("float32")
            a[a == src.nodata] = np.nan
            stack[f.stem] = a
    stats = {k: float(np.nanmax(v)) for k, v in stack.items()}
    return {"layers": len(stats)}


def run_ingest(folder: Path, out: Path, *, reproject: bool) -> dict[str, float]:
    from geoensemble.app.config import Align, DataConfig, TargetGridConfig
    from geoensemble.io.stack import build_stack, write_stack

    target = TargetGridConfig()
    if reproject:
        with rasterio.open(next(iter(sorted(folder.glob("*.tif"))))) as src:
            b = src.bounds
        target = TargetGridConfig(
            resolution=[30.0], bounds=[b.left + 10, b.bottom + 10, b.right - 20, b.top - 20]
        )
    cfg = DataConfig(
        path=str(folder),
        pattern="*.tif",
        align=Align.reproject if reproject else Align.strict,
        target=target,
        chunk_size=1024,
    )
    report = write_stack(build_stack(cfg), out)
    return {"layers": len(report)}


def child(variant: str, folder: Path, out: Path) -> None:
    import psutil

    if variant != "rasterio":
        import zarr  # noqa: F401  (imports are not what is measured)

        import geoensemble.io.stack  # noqa: F401
    base_mb = psutil.Process().memory_info().rss / 2**20
    t0 = time.perf_counter()
    if variant == "rasterio":
        info = run_rasterio(folder)
    else:
        info = run_ingest(folder, out, reproject=variant == "ingest_reproject")
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb, "base_mb": base_mb, **info}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mpx", type=float, default=20.0, help="million pixels per layer")
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    ap.add_argument(
        "--child", nargs=3, metavar=("VARIANT", "FOLDER", "OUT"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    folder = work / "layers"
    t0 = time.perf_counter()
    h, w = write_inputs(folder, mpx=args.mpx, layers=args.layers)
    raw_mb = h * w * 2 * args.layers / 1e6
    print(
        f"inputs: {args.layers} x {h} x {w} uint16 GeoTiffs (LZW), {raw_mb:.0f} MB "
        f"uncompressed, written in {time.perf_counter() - t0:.1f} s"
    )
    results = {}
    for variant in ("rasterio", "ingest", "ingest_reproject"):
        out = work / f"stack-{variant}"
        proc = subprocess.run(
            [sys.executable, __file__, "--child", variant, str(folder), str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            print(f"{variant} failed:\n{proc.stderr[-3000:]}")
            raise SystemExit(1)
        results[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
        shutil.rmtree(out, ignore_errors=True)
    base = results["rasterio"]
    # "growth" is the peak minus the RSS after imports: the memory the data itself needed.
    print(
        f"{'variant':<18}{'seconds':>9}{'MB/s':>8}{'peak RSS MB':>13}{'growth MB':>11}"
        f"{'time x':>8}{'RSS x':>7}{'growth x':>10}"
    )
    for variant, r in results.items():
        growth = r["peak_rss_mb"] - r["base_mb"]
        print(
            f"{variant:<18}{r['seconds']:>9.1f}{raw_mb / r['seconds']:>8.0f}"
            f"{r['peak_rss_mb']:>13.0f}{growth:>11.0f}{r['seconds'] / base['seconds']:>8.2f}"
            f"{r['peak_rss_mb'] / base['peak_rss_mb']:>7.2f}"
            f"{growth / (base['peak_rss_mb'] - base['base_mb']):>10.2f}"
        )
    print(
        f"float32 stack in memory would be {raw_mb * 2:.0f} MB; ratios are against the "
        f"plain rasterio read measured in this run"
    )
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
