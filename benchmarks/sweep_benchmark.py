"""Hydra sweeps: the joblib launcher (2 jobs at a time) against one job after another.

Measured in one run, on the same features and the same jobs (``model.n_clusters`` over
``--jobs`` values, one dask worker thread per job), both logging to the same real
``mlflow server`` on 127.0.0.1 (free port; parallel jobs must not share one SQLite file):

- ``sequential``: ``python pipelines/train.py -m ... compute=threads tracking=server``;
- ``parallel``: the same with ``+experiment=parallel_sweep`` (joblib launcher, ``n_jobs=2``).

Prints both wall times and their ratio (parallel / sequential; below 1 means the parallel
launcher pays off on this machine), and checks that every job of both sweeps logged its
ensemble run.

    python benchmarks/sweep_benchmark.py [--size 400] [--jobs 4] [--members 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def overrides(d: Path, size: int, members: int) -> list[str]:
    return [
        f"data.scene.width={size}",
        f"data.scene.height={size}",
        f"paths.raw={d}/raw",
        f"paths.stack={d}/stack",
        f"paths.features={d}/features",
        f"paths.labels={d}/labels",
        f"data.path={d}/raw/scene",
        f"data.truth={d}/raw/labels/truth.tif",
        f"data.labels.path={d}/raw/labels/points.geojson",
        f"ensemble.size={members}",
        "features.sample.size=50000",
    ]


def sweep(d: Path, name: str, base: list[str], ks: str, url: str, *extra: str) -> float:
    """Wall time of one sweep; its jobs' reports go to ``d/name``."""
    cmd = [
        *(PY, "pipelines/train.py", "-m", *base, f"model.n_clusters={ks}", "model.space={}"),
        *("compute=threads", "tracking=server", f"tracking.uri={url}"),
        f"tracking.experiment=bench-{name}",
        f"paths.reports={d}/{name}/${{hydra:job.num}}",
        f"hydra.sweep.dir={d}/{name}/sweep",
        *extra,
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    summary = json.loads((d / name / "sweep" / "sweep_summary.json").read_text())
    assert summary["status"] == "FINISHED" and len(summary["jobs"]) == len(ks.split(","))
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=400, help="scene width and height (px)")
    ap.add_argument("--jobs", type=int, default=4, help="sweep jobs (n_clusters values)")
    ap.add_argument("--members", type=int, default=3, help="ensemble members per job")
    args = ap.parse_args()
    ks = ",".join(str(4 + 2 * i) for i in range(args.jobs))

    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        d = Path(tmp)
        base = overrides(d, args.size, args.members)
        for stage in ("scene", "ingest", "featurize"):
            subprocess.run(
                [PY, f"pipelines/{stage}.py", *base, f"paths.reports={d}/reports"],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [
                *(PY, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)),
                *("--backend-store-uri", f"sqlite:///{d}/mlflow.db"),
                *("--artifacts-destination", str(d / "mlartifacts")),
            ],
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/health", timeout=5):
                        break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("mlflow server did not start") from None
                    time.sleep(0.5)
            seq = sweep(d, "sequential", base, ks, url)
            par = sweep(d, "parallel", base, ks, url, "+experiment=parallel_sweep")
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)

    print(f"scene {args.size} x {args.size} px, {args.jobs} jobs x {args.members} members")
    print(f"sequential (basic launcher)     {seq:7.1f} s")
    print(f"parallel (joblib, n_jobs=2)     {par:7.1f} s")
    print(f"ratio parallel / sequential     {par / seq:7.2f}")


if __name__ == "__main__":
    main()
