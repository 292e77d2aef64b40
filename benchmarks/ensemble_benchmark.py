"""Ensemble fitting: 16 K-Means members on a 1-million-pixel sample.

Measured in one run, on the same sample and the same 16 parameter sets:

- the generations search on a dask ``LocalCluster`` (2 worker processes x 1 thread), as the
  train stage runs it: the workers start while MLflow's store is opened and the parent run
  created, every member is logged to a SQLite MLflow store as it finishes, the kept member is
  logged as a model and registered, and the cluster is closed; all of it is timed;
- a plain sequential loop in this process fitting and scoring the same members, no MLflow.

The MLflow store is created before the timed run, once, as a project's first run does (its
time is printed apart): every later run opens an existing store. Creating it also loads
MLflow's store modules in this process, as the sequential loop has scikit-learn loaded.

Prints the ratio of the two wall times (target: at most 0.65 on 2 cores) and the share of the
cluster run's wall time spent in MLflow calls, store and parent run included (target: under
10 %).

    python benchmarks/ensemble_benchmark.py [--pixels 1000000] [--members 16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def sample(n: int, d: int = 11, k: int = 8, seed: int = 0) -> np.ndarray:
    """``n`` pixels of ``d`` features from ``k`` Gaussian land-cover-like clusters."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(k, d))
    labels = rng.integers(0, k, n)
    return (centres[labels] + rng.normal(0, 1, size=(n, d))).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pixels", type=int, default=1_000_000)
    ap.add_argument("--members", type=int, default=16)
    args = ap.parse_args()

    from geoensemble import tracking
    from geoensemble.compute import dask_client, wait_for_workers
    from geoensemble.config import validate
    from geoensemble.ensemble.runlog import MemberLogger
    from geoensemble.ensemble.search import TrainingData, fit_member, member_spec, run_ensemble
    from geoensemble.params import compose

    X = sample(args.pixels)
    preview = TrainingData(X=X, preview_X=X[:40_000], preview_mask=np.ones((200, 200), bool))
    with tempfile.TemporaryDirectory() as tmp:
        cfg = validate(
            compose(
                [
                    f"ensemble.size={args.members}",
                    "ensemble.generations=1",
                    "ensemble.keep=1",
                    "~model.space.n_clusters",
                    f"+model.space.n_clusters={{low: 3, high: {args.members + 10}}}",
                    f"features.sample.size={args.pixels}",
                    f"tracking.uri=sqlite:///{Path(tmp) / 'mlflow.db'}",
                    "compute.n_workers=2",
                    "compute.threads_per_worker=1",
                    "compute.processes=true",
                ],
                config_dir=Path(__file__).resolve().parents[1] / "conf",
            )
        )
        print(
            f"{args.members} members of {cfg.model.estimator['_target_']} on "
            f"{args.pixels:,} pixels x {X.shape[1]} features"
        )
        t0 = time.perf_counter()
        tracking.setup(cfg.tracking)
        new_store = time.perf_counter() - t0

        phases: dict[str, float] = {}
        t0 = tick = time.perf_counter()

        def phase(name: str) -> None:
            nonlocal tick
            now = time.perf_counter()
            phases[name] = now - tick
            tick = now

        # As the train stage does: workers start (forked from a server that has imported
        # scikit-learn) while MLflow is set up, members are logged as they finish, the kept
        # member is logged and registered at the end.
        with dask_client(cfg.compute, preload=["geoensemble.ensemble.member"]) as client:
            phase("start the scheduler")
            exp = tracking.setup(cfg.tracking)
            with tracking.parent_run(exp, run_name="benchmark", params={}, tags={}) as parent:
                logger = MemberLogger(
                    exp, parent, family="kmeans", space_keys=["n_clusters"], tags={}
                )
                phase("open the MLflow store, parent run")
                wait_for_workers(client, cfg.compute.timeout)
                phase("workers still starting")
                result = run_ensemble(preview, cfg, client, on_member=logger.log_member)
                phase("search (members logged as they finish)")
                logger.finish(
                    result,
                    feature_names=[f"f{i}" for i in range(X.shape[1])],
                    example=X[:5],
                    model_name="benchmark",
                    alias="champion",
                    ensemble_name="benchmark",
                )
                phase("log and register the kept member")
        phase("close the cluster")
        cluster_wall = time.perf_counter() - t0
        mlflow_seconds = phases["open the MLflow store, parent run"] + logger.seconds
        fit_only = phases["search (members logged as they finish)"]

        spec = member_spec(cfg)
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        seq_fit = 0.0
        for m in result.members:
            seq_fit += fit_member(
                preview, spec, {**m.params, "random_state": m.seed}, m.seed
            ).seconds
        sequential = time.perf_counter() - t0
        cluster_fit = sum(m.fit_seconds for m in result.members)

    print(
        f"load average (1 min) before the sequential loop: {load_before:.1f} "
        f"on {os.cpu_count()} cores (other processes take cores from both runs)"
    )
    print(f"one-time: creating the MLflow store    {new_store:6.1f} s (not in the run below)")
    print(f"sum of member fit times: cluster {cluster_fit:.1f} s, sequential {seq_fit:.1f} s")
    print(f"sequential loop (no MLflow)            {sequential:6.1f} s")
    print(f"LocalCluster, all included             {cluster_wall:6.1f} s")
    for name, seconds in phases.items():
        print(f"  {name:<36} {seconds:6.1f} s")
    print(f"  MLflow calls (within the above)      {mlflow_seconds:6.1f} s")
    ratio = cluster_wall / sequential
    share = mlflow_seconds / cluster_wall
    print(f"ratio cluster / sequential             {ratio:6.2f}   (target <= 0.65)")
    print(f"ratio search only / sequential         {fit_only / sequential:6.2f}")
    print(f"MLflow share of the cluster run        {100 * share:5.1f} %  (target < 10 %)")


if __name__ == "__main__":
    main()
