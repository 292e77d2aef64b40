"""Fit ensembles over generations: Optuna proposes, dask fits, the metric selects.

Generation 0 always contains the model's own parameters (enqueued) plus proposals from the
sampler; each later generation is a fresh batch of proposals from Optuna's NSGA-II sampler,
which mutates and recombines the best members so far (elm's evolutionary search). Identical
proposals are not fitted twice. The search stops early when the best score has not improved
for ``ensemble.patience`` generations.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.samplers import NSGAIISampler
from optuna.trial import TrialState

from geoensemble.config import AppConfig
from geoensemble.ensemble.pipeline import build_pipeline
from geoensemble.ensemble.scoring import score_unsupervised
from geoensemble.ensemble.space import defaults_in_space, distributions
from geoensemble.errors import ConfigError

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass
class Member:
    """One fitted ensemble member."""

    number: int
    generation: int
    params: dict[str, Any]
    scores: dict[str, float]
    fit_seconds: float
    pipeline: Any = None
    rank: int = 0

    @property
    def name(self) -> str:
        return f"member-{self.number:03d}"


@dataclass
class EnsembleResult:
    """Every member fitted, the ones kept (best first) and the per-generation history."""

    members: list[Member]
    kept: list[Member]
    history: list[dict[str, float]] = field(default_factory=list)
    metric: str = "aic"


def fit_member(
    X: np.ndarray,
    steps: dict[str, Any],
    estimator: dict[str, Any],
    impute: str | None,
    params: dict[str, Any],
    threads: int,
) -> tuple[Any, dict[str, float], float]:
    """Build, fit and score one member (runs on a dask worker)."""
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    with threadpool_limits(limits=threads):
        pipe = build_pipeline(steps, estimator, impute=impute, params=params, n_features=X.shape[1])
        pipe.fit(X)
        seconds = time.perf_counter() - t0
        scores = score_unsupervised(pipe, X)
    return pipe, scores, seconds


def _better(a: float, b: float, direction: str) -> bool:
    return a < b if direction == "minimize" else a > b


def run_ensemble(
    X: np.ndarray,
    cfg: AppConfig,
    client: Any,
    *,
    on_generation: Callable[[int, list[Member]], None] | None = None,
) -> EnsembleResult:
    """Fit ``cfg.ensemble.generations`` generations of ``cfg.ensemble.size`` members.

    Parameters
    ----------
    X
        The training sample ``(n, features)``, sent to the workers once.
    cfg
        The validated config.
    client
        A ``distributed.Client``.
    on_generation
        Called with each finished generation's members (used to log them to MLflow as
        soon as they exist).
    """
    ens, metric = cfg.ensemble, cfg.ensemble.metric
    direction = ens.direction.value
    dists = distributions(cfg.model.space)
    estimator = dict(cfg.model.estimator)
    steps = {k: (dict(v) if v is not None else None) for k, v in cfg.features.steps.items()}
    study = optuna.create_study(
        directions=[ens.direction.value],
        sampler=NSGAIISampler(seed=cfg.seed, population_size=max(2, ens.size)),
    )
    defaults = defaults_in_space(estimator, dists)
    if defaults:
        study.enqueue_trial(defaults)
    seeded = "random_state" in estimator
    X_future = client.scatter(X, broadcast=True)
    seen: set[tuple[tuple[str, Any], ...]] = set()
    members: list[Member] = []
    history: list[dict[str, float]] = []
    best, stale = math.nan, 0
    for gen in range(ens.generations):
        trials: list[optuna.trial.Trial] = []
        for _ in range(ens.size * 25):
            if len(trials) == ens.size:
                break
            trial = study.ask(dists)
            key = tuple(sorted(trial.params.items()))
            if key in seen:
                study.tell(trial, state=TrialState.FAIL)  # duplicate: not worth a fit
                continue
            seen.add(key)
            trials.append(trial)
        if not trials:
            break  # the space is exhausted
        futures = []
        for trial in trials:
            params = dict(trial.params)
            if seeded:
                params["random_state"] = cfg.seed + trial.number
            futures.append(
                client.submit(
                    fit_member,
                    X_future,
                    steps,
                    estimator,
                    cfg.features.impute,
                    params,
                    cfg.compute.threads_per_worker,
                    pure=False,
                    key=f"fit-gen{gen}-{trial.number}",
                )
            )
        results = client.gather(futures)
        gen_members = []
        for trial, (pipe, scores, seconds) in zip(trials, results, strict=True):
            if metric not in scores:
                raise ConfigError(
                    f"ensemble.metric={metric!r} is not computed for this model: "
                    f"choose one of {sorted(scores)}"
                )
            study.tell(trial, scores[metric])
            gen_members.append(
                Member(
                    number=trial.number,
                    generation=gen,
                    params=dict(trial.params),
                    scores=scores,
                    fit_seconds=seconds,
                    pipeline=pipe,
                )
            )
        members.extend(gen_members)
        gen_best = min if direction == "minimize" else max
        score = gen_best(m.scores[metric] for m in members)
        if math.isnan(best) or _better(score, best, direction):
            best, stale = score, 0
        else:
            stale += 1
        history.append(
            {
                "generation": gen,
                "best": best,
                "members": float(len(gen_members)),
                "generation_best": gen_best(m.scores[metric] for m in gen_members),
            }
        )
        _rank(members, metric, direction)
        if on_generation:
            on_generation(gen, gen_members)
        if stale >= ens.patience:
            break
    kept = sorted(members, key=lambda m: m.rank)[: ens.keep]
    return EnsembleResult(members=members, kept=kept, history=history, metric=metric)


def _rank(members: list[Member], metric: str, direction: str) -> None:
    sign = 1.0 if direction == "minimize" else -1.0
    for rank, m in enumerate(sorted(members, key=lambda m: sign * m.scores[metric]), start=1):
        m.rank = rank
