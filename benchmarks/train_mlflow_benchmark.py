"""MLflow's share of the train stage: the default scene, a store that already exists.

Method (what "time in MLflow" means here):

1. A copy of the project (``conf/``, ``params.yaml``, ``pipelines/``) in a temporary folder runs
   the data stages once (scene, ingest, featurize, labels) and the train stage once, which
   creates the SQLite store ``mlflow.db``: a project's first run, not measured.
2. Then ``python pipelines/train.py --params params.yaml`` (the command ``dvc repro`` runs) is
   run ``--runs`` times as a new process each, on the store that now exists.
3. Each run's ``reports/train.json`` gives ``mlflow_seconds``: the wall time the stage's main
   thread waited on MLflow (opening the store, the parent run, waiting for the calls that ran
   in the background, registering the kept members, the alias, the last metrics), and
   ``train_seconds``: the wall time of the stage from the start of the train function to its
   last MLflow call. Their ratio is the share reported (``mlflow_share``); the share of the
   whole process (Python start, imports, Hydra included) is printed beside it.
   ``mlflow_background_seconds`` is the time the calls run on the background thread took
   while the members fitted (member runs, previews, the config artifact): the stage did not
   wait for them, but on a loaded machine they take CPU from the fits.
4. The medians over the runs are printed; the target is a share of at most 25 %. The load
   average is printed too: other processes on the machine slow every part.

    python benchmarks/train_mlflow_benchmark.py [--runs 5] [--src DIR] [override ...]

``--src`` runs another checkout's ``src`` (e.g. the previous commit, for a before/after
comparison); overrides are passed to every stage (e.g. ``ensemble.size=8``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def stage(project: Path, name: str, src: Path, overrides: list[str]) -> float:
    """Run one stage as ``dvc repro`` would (plus overrides); return its wall time."""
    cmd = [sys.executable, f"pipelines/{name}.py"]
    cmd += overrides if overrides else ["--params", "params.yaml"]
    env = {**os.environ, "PYTHONPATH": str(src), "GEOENSEMBLE_LOG_DIR": str(project / "logs")}
    env.pop("MLFLOW_TRACKING_URI", None)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall


def parent_metric(project: Path, report: dict[str, object], key: str) -> float:
    """A metric of the ensemble's parent run, read from the SQLite store (for versions of
    geoensemble whose ``train.json`` does not hold it)."""
    import sqlite3

    with sqlite3.connect(project / "mlflow.db") as con:
        row = con.execute(
            "SELECT value FROM latest_metrics WHERE run_uuid = ? AND key = ?",
            (report["parent_run_id"], key),
        ).fetchone()
    return float(row[0]) if row else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="measured train runs (default 5)")
    ap.add_argument("--src", type=Path, default=ROOT / "src", help="the geoensemble to run")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every stage")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="geoensemble-bench-") as tmp:
        project = Path(tmp)
        for part in ("conf", "pipelines"):
            shutil.copytree(ROOT / part, project / part)
        shutil.copy(ROOT / "params.yaml", project / "params.yaml")
        for name in ("scene", "ingest", "featurize", "labels"):
            stage(project, name, args.src, args.overrides)
        first = stage(project, "train", args.src, args.overrides)
        print(f"first train (creates the store, not measured): {first:.1f} s")
        rows = []
        for i in range(args.runs):
            process = stage(project, "train", args.src, args.overrides)
            rep = json.loads((project / "reports/train.json").read_text())
            train = rep.get("train_seconds") or parent_metric(project, rep, "train_seconds")
            row = {
                "process": process,
                "train": train,
                "mlflow": rep["mlflow_seconds"],
                "background": rep.get("mlflow_background_seconds", float("nan")),
            }
            rows.append(row)
            print(
                f"run {i + 1}: process {process:5.1f} s, train stage {train:5.1f} s, waiting on "
                f"MLflow {row['mlflow']:4.2f} s = {100 * row['mlflow'] / train:4.1f} % "
                f"({100 * row['mlflow'] / process:4.1f} % of the process); background MLflow "
                f"{row['background']:4.2f} s; load {os.getloadavg()[0]:.1f}"
            )

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    share = statistics.median(r["mlflow"] / r["train"] for r in rows)
    print(
        f"median of {len(rows)}: train stage {med('train'):.1f} s, waiting on MLflow "
        f"{med('mlflow'):.2f} s, share {100 * share:.1f} % (target <= 25 %), background "
        f"{med('background'):.2f} s, process {med('process'):.1f} s; {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
