"""MLflow's share of the train stage: the default scene, a store that already exists.

Method (what "time in MLflow" means here):

1. A copy of the project (``conf/``, ``params.yaml``, ``pipelines/``) in a temporary folder runs
   the data stages once (scene, ingest, featurize, labels) and the train stage once, which
   creates the SQLite store ``mlflow.db``: a project's first run, not measured.
2. Then ``python pipelines/train.py --params params.yaml`` (the command ``dvc repro`` runs) is
   run ``--runs`` times as a new process each, on the store that now exists.
3. Each run's ``reports/train.json`` gives ``mlflow_seconds``: the wall time the stage's main
   thread waited on MLflow (checking the store, waiting for the calls that ran in the
   background, registering the kept members, the alias, the view, the last metrics, ending
   the parent run), and ``train_seconds``: the wall time of the train function (training
   data, fits, MLflow, closing the cluster). Their ratio is the share reported
   (``mlflow_share``); the share of the whole process (Python start, imports, Hydra
   included) is printed beside it.
   ``mlflow_background_seconds`` is the time of the calls run on the background thread while
   the members fitted (importing and opening MLflow, the parent and member runs, previews,
   the config artifact): the stage does not wait for them, but they use CPU. Where the
   fitting workers keep every core busy (2 workers on 2 cores), that CPU is taken from the
   fits, and the process wall time shows it: compare it with ``--baseline``.
4. The medians over the runs are printed; the target is a share of at most 25 %. The load
   average is printed too: other processes on the machine slow every part.

    python benchmarks/train_mlflow_benchmark.py [--runs 5] [--baseline DIR] [override ...]

``--src`` runs another checkout's ``src``; ``--baseline DIR`` also runs the ``src`` of another
checkout (e.g. of an earlier commit: ``mkdir /tmp/old && git archive <commit> src | tar -x -C
/tmp/old``, then ``--baseline /tmp/old/src``) before each measured
run, on the same store, so that a before/after comparison of the process wall times sees the
same load. Overrides are passed to every stage (e.g. ``ensemble.size=8``).
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


def measure(project: Path, src: Path, overrides: list[str]) -> dict[str, float]:
    """One train run: its process wall time and what its report says about MLflow."""
    process = stage(project, "train", src, overrides)
    rep = json.loads((project / "reports/train.json").read_text())
    return {
        "process": process,
        "train": rep.get("train_seconds") or parent_metric(project, rep, "train_seconds"),
        "mlflow": rep["mlflow_seconds"],
        "background": rep.get("mlflow_background_seconds", float("nan")),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="measured train runs (default 5)")
    ap.add_argument("--src", type=Path, default=ROOT / "src", help="the geoensemble to run")
    ap.add_argument(
        "--baseline",
        type=Path,
        help="another checkout's src, run before each measured run on the same store, so "
        "that both see the same load",
    )
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every stage")
    args = ap.parse_args()

    rows: list[dict[str, float]] = []
    base: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="geoensemble-bench-") as tmp:
        project = Path(tmp)
        for part in ("conf", "pipelines"):
            shutil.copytree(ROOT / part, project / part)
        shutil.copy(ROOT / "params.yaml", project / "params.yaml")
        for name in ("scene", "ingest", "featurize", "labels"):
            stage(project, name, args.src, args.overrides)
        first = stage(project, "train", args.src, args.overrides)
        print(f"first train (creates the store, not measured): {first:.1f} s")
        for i in range(args.runs):
            if args.baseline:
                b = measure(project, args.baseline, args.overrides)
                base.append(b)
                print(
                    f"baseline {i + 1}: process {b['process']:5.1f} s, train stage "
                    f"{b['train']:5.1f} s, waiting on MLflow {b['mlflow']:4.2f} s = "
                    f"{100 * b['mlflow'] / b['train']:4.1f} %"
                )
            row = measure(project, args.src, args.overrides)
            rows.append(row)
            print(
                f"run {i + 1}: process {row['process']:5.1f} s, train stage {row['train']:5.1f} s, "
                f"waiting on MLflow {row['mlflow']:4.2f} s = "
                f"{100 * row['mlflow'] / row['train']:4.1f} % "
                f"({100 * row['mlflow'] / row['process']:4.1f} % of the process); background "
                f"MLflow {row['background']:4.2f} s; load {os.getloadavg()[0]:.1f}"
            )

    def summary(name: str, runs: list[dict[str, float]]) -> str:
        def med(key: str) -> float:
            return statistics.median(r[key] for r in runs)

        share = statistics.median(r["mlflow"] / r["train"] for r in runs)
        return (
            f"{name}: median of {len(runs)}: process {med('process'):.1f} s, train stage "
            f"{med('train'):.1f} s, waiting on MLflow {med('mlflow'):.2f} s, share "
            f"{100 * share:.1f} % (target <= 25 %), background {med('background'):.2f} s"
        )

    if base:
        print(summary("baseline", base))
    print(summary("measured", rows) + f"; {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
