"""Ensemble fitting: 16 K-Means members on a 1-million-pixel sample.

Measured in one run, on the same sample and the same 16 parameter sets:

- the generations search on a dask ``LocalCluster`` (2 worker processes x 1 thread), every
  member logged to a fresh SQLite MLflow store as it finishes and the kept member logged as a
  model and registered (what the train stage does);
- a plain sequential loop in this process fitting and scoring the same members, no MLflow.

Prints the ratio of the two wall times (target: at most 0.65 on 2 cores) and the share of the
cluster run's wall time spent in MLflow calls (target: under 10 %).

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
    from geoensemble.compute import dask_client
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
        exp = tracking.setup(cfg.tracking)
        with tracking.parent_run(exp, run_name="benchmark", params={}, tags={}) as parent:
            logger = MemberLogger(exp, parent, family="kmeans", space_keys=["n_clusters"], tags={})
            with dask_client(cfg.compute) as client:
                t_fit = time.perf_counter()
                result = run_ensemble(preview, cfg, client, on_generation=logger)
                fit_only = time.perf_counter() - t_fit
            logger.finish(
                result,
                feature_names=[f"f{i}" for i in range(X.shape[1])],
                example=X[:5],
                model_name="benchmark",
                alias="champion",
                ensemble_name="benchmark",
            )
        cluster_wall = time.perf_counter() - t0

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
    print(f"sum of member fit times: cluster {cluster_fit:.1f} s, sequential {seq_fit:.1f} s")
    print(f"sequential loop (no MLflow)        {sequential:8.1f} s")
    print(f"LocalCluster, all included         {cluster_wall:8.1f} s")
    print(f"  of which the search on the cluster {fit_only:6.1f} s")
    print(f"  of which MLflow calls            {logger.seconds:8.1f} s")
    ratio = cluster_wall / sequential
    share = logger.seconds / cluster_wall
    print(f"ratio cluster / sequential         {ratio:8.2f}   (target <= 0.65)")
    print(f"ratio search only / sequential     {fit_only / sequential:8.2f}")
    print(f"MLflow share of the cluster run    {100 * share:7.1f} %  (target < 10 %)")


if __name__ == "__main__":
    main()
