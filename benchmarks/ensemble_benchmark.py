"""Ensemble fitting: 16 K-Means members on a 1-million-pixel sample, cluster against a loop.

Both variants are whole processes (start to exit, imports included), run in interleaved
rounds by :mod:`harness`, on the same sample (one ``.npy`` file) and the same 16 members:

- ``cluster``: the generations search on a dask ``LocalCluster`` (2 worker processes x 1
  thread), as the train stage runs it: the workers start while MLflow's store is opened and
  the parent run created, every member is fitted, scored and logged to a SQLite MLflow store
  as it finishes, the kept member is logged as a model and registered, the cluster closed;
- ``loop``: the plain loop a user would write: for each of the same members (parameters and
  seed as the cluster run drew them), build its scikit-learn pipeline and ``pipeline.fit``
  the sample, with scikit-learn's default threading (no ``threadpool_limits``: K-Means uses
  every core through OpenMP), no scoring, no MLflow.

The MLflow store is created once before the rounds, as a project's first run does (every
later run opens an existing store). The cluster variant prints its own phases (scheduler
start, MLflow, search, logging, closing); the ratio cluster / loop is the result (issue 16
target: at most 0.8 on 2 cores).

    python benchmarks/ensemble_benchmark.py [--pixels 1000000] [--members 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from geoensemble.app.config import AppConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

ROOT = Path(__file__).resolve().parents[1]


def sample(n: int, d: int = 11, k: int = 8, seed: int = 0) -> np.ndarray:
    """``n`` pixels of ``d`` features from ``k`` Gaussian land-cover-like clusters."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(k, d))
    labels = rng.integers(0, k, n)
    return (centres[labels] + rng.normal(0, 1, size=(n, d))).astype(np.float32)


def config(work: Path, pixels: int, members: int) -> AppConfig:
    from geoensemble.app.params import compose
    from geoensemble.app.validate import validate

    return validate(
        compose(
            [
                f"ensemble.size={members}",
                "ensemble.generations=1",
                "ensemble.keep=1",
                "~model.space.n_clusters",
                f"+model.space.n_clusters={{low: 3, high: {members + 10}}}",
                f"features.sample.size={pixels}",
                f"tracking.uri=sqlite:///{work / 'mlflow.db'}",
                "compute.n_workers=2",
                "compute.threads_per_worker=1",
                "compute.processes=true",
            ],
            config_dir=ROOT / "conf",
        )
    )


def cluster(work: Path, pixels: int, members: int) -> None:
    """The train stage's way: LocalCluster, MLflow logging, registration."""
    from geoensemble.app.tracker import tracker_for
    from geoensemble.app.train import member_spec, search_of
    from geoensemble.compute import dask_client, wait_for_workers
    from geoensemble.ensemble.runlog import MemberLogger
    from geoensemble.ensemble.search import TrainingData, run_ensemble

    cfg = config(work, pixels, members)
    X = np.load(work / "sample.npy")
    side = int(np.sqrt(min(len(X), 40_000)))  # the preview: a square of the sample
    data = TrainingData(X=X, preview_X=X[: side * side], preview_mask=np.ones((side, side), bool))
    phases: dict[str, float] = {}
    tick = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        phases[name] = now - tick
        tick = now

    with dask_client(cfg.compute, preload=["geoensemble.ensemble.member"]) as client:
        phase("start the scheduler")
        tracker = tracker_for(cfg.tracking)
        exp = tracker.open()
        with tracker.parent_run(exp, run_name="benchmark", params={}, tags={}) as parent:
            logger = MemberLogger(
                exp, parent, tracker=tracker, family="kmeans", space_keys=["n_clusters"], tags={}
            )
            phase("MLflow store and parent run")
            wait_for_workers(client, cfg.compute.timeout)
            phase("workers still starting")
            result = run_ensemble(
                data, member_spec(cfg), search_of(cfg), client, on_member=logger.log_member
            )
            phase("search (fit, score, log each member)")
            versions = logger.finish(
                result,
                feature_names=[f"f{i}" for i in range(X.shape[1])],
                example=X[:5],
                model_name="benchmark",
                ensemble_name="benchmark",
            )
            # as the workspace pipeline does (see geoensemble.app.promote): the best gets the alias
            tracker.set_alias("benchmark", "champion", versions[result.kept[0].number])
            phase("log and register the kept member")
    phase("close the cluster")
    phases["MLflow calls"] = phases["MLflow store and parent run"] + logger.seconds
    (work / "members.json").write_text(
        json.dumps([{"params": m.params, "seed": m.seed} for m in result.members])
    )
    print(harness.PHASES_MARK + json.dumps({k: round(v, 3) for k, v in phases.items()}))


def loop(work: Path, pixels: int, members: int) -> None:
    """A plain loop of ``pipeline.fit`` over the same members, default threading."""
    from geoensemble.app.train import member_spec

    spec = member_spec(config(work, pixels, members))
    X = np.load(work / "sample.npy")
    t0 = time.perf_counter()
    for m in json.loads((work / "members.json").read_text()):
        pipe = spec.build({**m["params"], "random_state": m["seed"]}, n_features=X.shape[1])
        pipe.fit(X)
    print(harness.PHASES_MARK + json.dumps({"fit": round(time.perf_counter() - t0, 3)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--pixels", type=int, default=1_000_000)
    ap.add_argument("--members", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--child", choices=["cluster", "loop"])
    ap.add_argument("--work")
    args = ap.parse_args()
    if args.child:
        fn = cluster if args.child == "cluster" else loop
        fn(Path(args.work), args.pixels, args.members)
        return

    from geoensemble.app.tracker import tracker_for

    with tempfile.TemporaryDirectory(prefix="ensemble-bench-") as tmp:
        work = Path(tmp)
        X = sample(args.pixels)
        np.save(work / "sample.npy", X)
        cfg = config(work, args.pixels, args.members)
        t0 = time.perf_counter()
        tracker_for(cfg.tracking).open()
        print(
            f"{args.members} members of {cfg.model.estimator['_target_']} on "
            f"{args.pixels:,} pixels x {X.shape[1]} features; MLflow store created once in "
            f"{time.perf_counter() - t0:.1f} s (not timed)"
        )
        me = [harness.python(), __file__, "--work", str(work), "--pixels", str(args.pixels)]
        me += ["--members", str(args.members), "--child"]
        env = {"PYTHONWARNINGS": "ignore"}
        variants = [
            harness.Variant(
                "cluster",
                "the train stage's search: LocalCluster of 2 worker processes x 1 thread, "
                "each member fitted, scored and logged to SQLite MLflow as it finishes, the "
                "kept one registered, cluster closed",
                [*me, "cluster"],
                env,
            ),
            harness.Variant(
                "loop",
                "plain loop: build each of the same members' pipeline and pipeline.fit the "
                "same sample, scikit-learn default threading, no scoring, no MLflow",
                [*me, "loop"],
                env,
            ),
        ]
        harness.print_definitions("ensemble fitting", variants)
        runs = harness.interleaved(variants, repeats=args.repeats)
        sums = harness.report(runs, ratios=[("cluster / loop", "cluster", "loop")])
        r = sums["cluster"].seconds / sums["loop"].seconds
        print(f"  target cluster / loop <= 0.8: {r:.2f} ({'met' if r <= 0.8 else 'NOT met'})")


if __name__ == "__main__":
    main()
