"""Scale: ingest -> featurize -> predict on a synthetic scene of ``--mpx`` megapixels x 10
layers, and the same predict on a dask.distributed cluster of 1 and 2 single-thread workers.

For each size in ``--mpx`` (e.g. ``25,100``) the benchmark writes 10 single-band uint16
GeoTiffs (tiled 512, LZW, nodata 0 outside a tilted footprint) to a temporary folder, fits a
K-Means (8 clusters) on a sample of them (``--model forest``: a 50-tree random forest fitted
to its clusters) and registers it in a SQLite MLflow store (none of that is timed),
then runs, each as a whole process (start to exit, imports included) with
:mod:`harness`:

- ``ingest``: ``python pipelines/ingest.py --params ...`` (the 10 layers onto one grid, a
  chunked Zarr store);
- ``featurize``: ``python pipelines/featurize.py --params ...`` (the 10 bands as features,
  no indices, no quicklooks);
- ``predict``: ``python pipelines/predict.py --params ...`` on the features, default outputs,
  ``predict.scheduler=threads`` (one thread per core);
- ``predict-dist-1`` and ``predict-dist-2``: the same predict with
  ``predict.scheduler=distributed`` on a LocalCluster of 1, then 2, worker processes x 1
  thread, which the stage starts and closes (interleaved rounds);
- ``predict-cluster-1`` and ``predict-cluster-2``: the same predict on an existing cluster
  (``compute.address``): a ``dask scheduler`` with 1, then 2, ``dask worker --nthreads 1``
  processes on loopback, started as the README says (``DASK_CONFIG=examples/dask``: without
  the nanny's ``MALLOC_TRIM_THRESHOLD_``), before the rounds and stopped after (not timed), each
  used once untimed first so its workers have imported what a block needs. This is the
  cluster's throughput, without its start-up (interleaved rounds).

It prints seconds, seconds per Mpx and peak RSS of each stage at each size (linear scaling
means equal seconds per Mpx), and the distributed throughput ratio t(1 worker) / t(2
workers) of whole processes and of the stage's ``blocks`` phase (the scene predicted and
written, without the cluster's start-up; issue 16 target: at least 1.7). Peak RSS is the
stage process's own; the distributed workers are separate processes and are not in it.

    python benchmarks/scale_benchmark.py --mpx 25,100 [--repeats 1] [--work DIR]
    python benchmarks/scale_benchmark.py --mpx 2,4      # a quick check
    python benchmarks/scale_benchmark.py --mpx 25 --model forest   # more work per pixel
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

ROOT = Path(__file__).resolve().parents[1]
LAYERS = [f"B{i}" for i in range(1, 11)]
TILE = 512


def write_layers(folder: Path, side: int, seed: int = 0) -> np.ndarray:
    """Ten tiled LZW uint16 layers written strip by strip (bounded memory); returns a
    sample of valid pixels (every 50th row and column) for fitting the model."""
    import rasterio

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, (len(LAYERS), 3))
    prof = harness.scene_profile(side, tile=TILE, BIGTIFF="IF_SAFER")
    dsts = [rasterio.open(folder / f"{b}.tif", "w", **prof) for b in LAYERS]
    sample = []
    try:
        for r0 in range(0, side, TILE):
            rows = min(TILE, side - r0)
            yy, xx = np.mgrid[r0 : r0 + rows, 0:side].astype(np.float32)
            foot = (xx > 0.05 * side + 0.1 * yy) & (xx < 0.97 * side)
            cover = np.round(np.sin(yy / 211) * 2 + np.cos(xx / 173) * 2)
            block = []
            for i in range(len(LAYERS)):
                a, b, c = phase[i]
                v = 3000 + 800 * cover * np.sin(a) + 500 * np.sin(yy / (90 + 9 * i) + b)
                v += 300 * np.cos(xx / (70 + 7 * i) + c) + rng.normal(0, 50, v.shape)
                arr = np.clip(v, 1, 65000).astype(np.uint16)
                arr[~foot] = 0
                dsts[i].write(arr, 1, window=((r0, r0 + rows), (0, side)))
                block.append(arr[::50, ::50])
            cube = np.stack(block).reshape(len(LAYERS), -1)
            sample.append(cube[:, (cube > 0).all(axis=0)].T)
    finally:
        for d in dsts:
            d.close()
    return np.concatenate(sample).astype(np.float32)


def register(X: np.ndarray, work: Path, model: str = "kmeans") -> None:
    """A K-Means (8 clusters) on the sample as ``models:/scale@champion``; with ``model``
    ``forest``, a 50-tree random forest fitted to that K-Means's clusters instead (more work
    per pixel, the same scene)."""
    from sklearn.cluster import KMeans
    from sklearn.ensemble import RandomForestClassifier

    fit = X[:: max(1, len(X) // 50_000)]
    km = KMeans(8, n_init=2, random_state=0).fit(fit)
    if model == "kmeans":
        harness.register_champion(work, km, "scale", LAYERS)
    else:
        forest = RandomForestClassifier(50, random_state=0).fit(fit, km.labels_)
        harness.register_champion(work, forest, "scale", LAYERS)


def params(work: Path, name: str, extra: list[str]) -> Path:
    """The composed config of one stage run, as ``dvc repro`` passes it."""
    from omegaconf import OmegaConf

    from geoensemble.app.params import compose
    from geoensemble.app.validate import validate

    raw = compose(
        [
            "data.name=scale",
            "data.format=geotiff_dir",
            f"data.path={work / 'raw'}",
            "data.pattern=B*.tif",
            "data.layers=[]",
            "data.align=strict",
            f"features.bands=[{','.join(LAYERS)}]",
            "features.indices=[]",
            "features.quicklooks=[]",
            "features.false_colour=[]",
            f"paths.stack={work / 'stack'}",
            f"paths.features={work / 'features'}",
            f"paths.reports={work / 'reports'}",
            f"tracking.uri=sqlite:///{work}/mlflow.db",
            "tracking.model_name=scale",
            f"predict.output_dir={work / 'maps'}",
            "predict.overwrite=true",
            "predict.progress=false",
            "compute.threads_per_worker=1",
            "compute.processes=true",
            *extra,
        ],
        config_dir=ROOT / "conf",
    )
    validate(raw)
    path = work / f"params_{name}.yaml"
    OmegaConf.save(raw, path, resolve=True)
    return path


def stage(work: Path, name: str, script: str, definition: str, extra: list[str]) -> harness.Variant:
    return harness.Variant(
        name,
        definition,
        [
            harness.python(),
            str(ROOT / "pipelines" / f"{script}.py"),
            "--params",
            str(params(work, name, extra)),
        ],
        {"GEOENSEMBLE_ROOT": str(work), "PYTHONWARNINGS": "ignore"},
        str(work),
    )


def one_size(
    mpx: float, work: Path, repeats: int, model: str = "kmeans"
) -> dict[str, dict[str, float]]:
    side = max(TILE, round(math.sqrt(mpx * 1e6)))
    t = time.perf_counter()
    X = write_layers(work / "raw", side)
    register(X, work, model)
    real = side * side / 1e6
    print(
        f"\nscene {side} x {side} = {real:.1f} Mpx x {len(LAYERS)} uint16 layers written, "
        f"model registered in {time.perf_counter() - t:.0f} s (not timed)"
    )
    chain = [
        stage(work, "ingest", "ingest", "python pipelines/ingest.py: 10 GeoTiffs -> Zarr", []),
        stage(work, "featurize", "featurize", "python pipelines/featurize.py: 10 bands", []),
        stage(
            work,
            "predict",
            "predict",
            "python pipelines/predict.py, threads (one per core), default outputs",
            [],
        ),
    ]
    dist = [
        stage(
            work,
            f"predict-dist-{n}",
            "predict",
            f"the same predict, predict.scheduler=distributed on {n} worker process(es) x "
            "1 thread (LocalCluster started and closed by the stage)",
            ["predict.scheduler=distributed", f"compute.n_workers={n}"],
        )
        for n in (1, 2)
    ]
    harness.print_definitions(
        f"scale, {real:.1f} Mpx x {len(LAYERS)} layers, champion: {model}", chain + dist
    )
    out: dict[str, dict[str, float]] = {}
    for v in chain:  # in order: each stage reads what the previous one wrote
        record(out, harness.report(harness.interleaved([v], repeats=repeats)), real)
    sums = harness.report(
        harness.interleaved(dist, repeats=repeats),
        ratios=[("throughput 2 workers / 1 worker", "predict-dist-1", "predict-dist-2")],
    )
    record(out, sums, real)
    with running_cluster(1, work) as addr1, running_cluster(2, work) as addr2:
        existing = [
            stage(
                work,
                f"predict-cluster-{n}",
                "predict",
                f"the same predict on an existing cluster of {n} dask worker process(es) x "
                "1 thread, started as the README says (DASK_CONFIG=examples/dask) "
                "(compute.address; its start-up not timed)",
                ["predict.scheduler=distributed", f"compute.address={addr}"],
            )
            for n, addr in ((1, addr1), (2, addr2))
        ]
        harness.print_definitions(f"scale, {real:.1f} Mpx, existing cluster", existing)
        for v in existing:  # a cluster in use: its workers have imported what a block needs
            harness.run_process(v)
        print("  (one untimed run on each cluster first: its workers warm, as in use)")
        ext = harness.report(
            harness.interleaved(existing, repeats=repeats),
            ratios=[
                (
                    "throughput 2 workers / 1 worker, existing cluster",
                    "predict-cluster-1",
                    "predict-cluster-2",
                )
            ],
        )
    record(out, ext, real)
    for key, runs, prefix, where in (
        ("_ratio_existing", ext, "predict-cluster", ", existing cluster"),
        ("_ratio", sums, "predict-dist", ""),
    ):
        ratio = blocks_ratio(runs, prefix, where)
        if ratio is not None:
            out[key] = {"blocks throughput 2/1": ratio}
    print(f"  at {real:.1f} Mpx:")
    for name, r in out.items():
        if name.startswith("_"):
            continue
        print(
            f"    {name:<16} {r['seconds']:7.2f} s  {r['s_per_mpx']:6.3f} s/Mpx  "
            f"peak RSS {r['rss']:6.0f} MB"
        )
    out["_mpx"] = {"mpx": real}
    return out


def record(out: dict[str, dict[str, float]], runs: dict[str, harness.Summary], mpx: float) -> None:
    """Seconds, seconds per Mpx and peak RSS of each summarised variant into ``out``."""
    for name, s in runs.items():
        out[name] = {"seconds": s.seconds, "s_per_mpx": s.seconds / mpx, "rss": s.peak_rss_mb}


def blocks_ratio(runs: dict[str, harness.Summary], prefix: str, where: str) -> float | None:
    """Throughput of ``<prefix>-2`` over ``<prefix>-1`` by the stage's own ``blocks`` phase
    (the scene's blocks predicted and written; cluster start and the fixed costs left out:
    what the workers' count can speed up), printed; ``None`` without the phase."""
    one, two = (runs[f"{prefix}-{n}"].phases.get("blocks", 0.0) for n in (1, 2))
    if not (one and two):
        return None
    print(f"  ratio throughput of the blocks phase{where}, 2 workers / 1 worker: {one / two:.2f}x")
    return one / two


@contextlib.contextmanager
def running_cluster(n: int, work: Path) -> Iterator[str]:
    """A ``dask scheduler`` and ``n`` single-thread ``dask worker`` processes on loopback,
    as a user's existing cluster; yields its address, stops them after."""
    import socket
    import subprocess

    from distributed import Client

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    addr = f"tcp://127.0.0.1:{port}"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False",
        # as the README says to start workers: without the nanny's MALLOC_TRIM_THRESHOLD_
        "DASK_CONFIG": str(ROOT / "examples" / "dask"),
    }

    def start(module: str, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [harness.python(), "-m", f"distributed.cli.{module}", *args],
            env=env,
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    procs = [
        start(
            "dask_scheduler",
            *("--host", "127.0.0.1", "--port", str(port), "--dashboard-address", "127.0.0.1:0"),
        )
    ]
    try:
        procs.append(
            start(
                "dask_worker",
                *(addr, "--nthreads", "1", "--nworkers", str(n), "--no-dashboard"),
                *("--host", "127.0.0.1"),
            )
        )
        with Client(addr, timeout=60) as client:
            client.wait_for_workers(n, timeout=120)
        yield addr
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--mpx", default="25,100", help="comma-separated scene sizes, Mpx")
    ap.add_argument("--repeats", type=int, default=1, help="interleaved rounds")
    ap.add_argument("--work", help="parent folder for the temporary scenes (default: $TMPDIR)")
    ap.add_argument(
        "--model",
        choices=["kmeans", "forest"],
        default="kmeans",
        help="the champion: K-Means (8), or a 50-tree forest fitted to its clusters",
    )
    args = ap.parse_args()
    sizes = [float(x) for x in args.mpx.split(",")]
    results = {}
    for mpx in sizes:
        with tempfile.TemporaryDirectory(prefix=f"scale-{mpx:g}-", dir=args.work) as tmp:
            results[mpx] = one_size(mpx, Path(tmp), args.repeats, args.model)
    if len(results) > 1:
        print("\nseconds per Mpx by size (linear scaling: equal across sizes):")
        names = [k for k in next(iter(results.values())) if not k.startswith("_")]
        for name in names:
            cells = "  ".join(
                f"{r['_mpx']['mpx']:6.1f} Mpx: {r[name]['s_per_mpx']:.3f} s/Mpx, "
                f"{r[name]['rss']:.0f} MB"
                for r in results.values()
            )
            print(f"  {name:<16} {cells}")
    print(json.dumps({str(k): v for k, v in results.items()}))


if __name__ == "__main__":
    main()
