"""Fit ensembles over generations: Optuna proposes, dask fits, the metric(s) select.

Generation 0 holds the model's own parameters (enqueued) plus random draws from the space;
each later generation is a batch of proposals from Optuna's NSGA-II sampler (population =
``ensemble.size``), which recombines and mutates the best members so far and, with its mutation
probability, draws fresh values (elm's evolutionary search). Members of every generation stay
in the ranking, so the best score can only improve or stay. Identical proposals are not fitted
twice. The search stops early when the best primary score has not improved for
``ensemble.patience`` generations. With extra ``ensemble.objectives`` the study is
multi-objective: members are ranked by Pareto front, then by the primary metric.

The training data (sample, labels, folds, preview grid) is scattered to the workers once; each
member is one task that builds, fits and scores its pipeline and draws its map preview.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.samplers import NSGAIISampler
from optuna.study import StudyDirection
from optuna.trial import TrialState

from geoensemble.config import AppConfig
from geoensemble.ensemble.folds import Fold
from geoensemble.ensemble.pipeline import build_pipeline
from geoensemble.ensemble.preview import preview_rgba
from geoensemble.ensemble.scoring import score_unsupervised
from geoensemble.ensemble.space import defaults_in_space, distributions
from geoensemble.ensemble.supervised import score_supervised
from geoensemble.errors import ComputeError, ConfigError

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass
class TrainingData:
    """Everything members train and score on; scattered to the workers once.

    ``y``, ``folds`` and ``classes`` are set for supervised members; ``preview_X`` and
    ``preview_mask`` (the valid pixels of a thinned grid) when previews are wanted.
    """

    X: np.ndarray
    y: np.ndarray | None = None
    folds: list[Fold] | None = None
    classes: np.ndarray | None = None
    preview_X: np.ndarray | None = None
    preview_mask: np.ndarray | None = None


@dataclass(frozen=True)
class MemberSpec:
    """What every member of an ensemble shares: how to build, fit and score it."""

    steps: dict[str, Any]
    estimator: dict[str, Any]
    impute: str | None = None
    kind: str = "cluster"
    threads: int = 1
    partial_fit_batches: int = 0
    per_member_sample: bool = False
    member_fraction: float = 0.5


@dataclass
class FitResult:
    """What a worker sends back for one member."""

    pipeline: Any
    scores: dict[str, float]
    seconds: float
    family: str = ""
    preview: np.ndarray | None = None


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
    front: int = 0
    seed: int | None = None
    family: str = ""
    consensus: bool = False
    preview: np.ndarray | None = None

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
    objectives: list[tuple[str, str]] = field(default_factory=list)


def _draw(n: int, fraction: float, seed: int | None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max(2, round(n * fraction)), replace=False))


def _fit_unsupervised(pipe: Any, X: np.ndarray, batches: int) -> None:
    est = pipe[-1]
    if batches > 0 and hasattr(est, "partial_fit"):
        # Learned preprocessing sees the whole sample; the estimator sees it batch by batch,
        # as elm's partial_fit over successive samples did.
        Xt = pipe[:-1].fit_transform(X) if len(pipe) > 1 else X
        for part in np.array_split(Xt, batches):
            est.partial_fit(part)
    else:
        pipe.fit(X)


def fit_member(
    data: TrainingData, spec: MemberSpec, params: dict[str, Any], seed: int | None = None
) -> FitResult:
    """Build, fit and score one member (runs on a dask worker).

    With ``spec.per_member_sample`` the member fits on its own seeded draw of
    ``spec.member_fraction`` of the sample; it is still scored on the whole sample (held-out
    folds for supervised members) so that scores compare across members.
    """
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    X = data.X
    with threadpool_limits(limits=spec.threads):
        pipe = build_pipeline(
            spec.steps, spec.estimator, impute=spec.impute, params=params, n_features=X.shape[1]
        )
        family = ""
        if spec.kind == "cluster":
            fit_X = X[_draw(len(X), spec.member_fraction, seed)] if spec.per_member_sample else X
            _fit_unsupervised(pipe, fit_X, spec.partial_fit_batches)
            seconds = time.perf_counter() - t0
            scores = score_unsupervised(pipe, X)
        else:
            if data.y is None or data.folds is None:
                raise ConfigError(
                    f"model.kind={spec.kind} needs labels: set data.labels.path and run "
                    f"the labels stage"
                )
            folds = data.folds
            if spec.per_member_sample:
                keep = np.zeros(len(X), dtype=bool)
                keep[_draw(len(X), spec.member_fraction, seed)] = True
                folds = [Fold(train=f.train[keep[f.train]], test=f.test) for f in folds]
            pipe, scores, family = score_supervised(
                pipe, X, data.y, folds, kind=spec.kind, classes=data.classes
            )
            seconds = time.perf_counter() - t0
        scores["fit_seconds"] = seconds
        preview = None
        if data.preview_X is not None and data.preview_mask is not None:
            values = pipe.predict(data.preview_X) if len(data.preview_X) else np.zeros(0)
            preview = preview_rgba(np.asarray(values), data.preview_mask, kind=spec.kind)
    return FitResult(pipe, scores, seconds, family, preview)


def consensus_member(
    data: TrainingData, pipelines: list[Any], n_clusters: int, seed: int, threads: int
) -> FitResult:
    """Build and score the pooled-centroid member (runs on a dask worker)."""
    from threadpoolctl import threadpool_limits

    from geoensemble.ensemble.consensus import pooled_centroid_member

    t0 = time.perf_counter()
    with threadpool_limits(limits=threads):
        pipe = pooled_centroid_member(pipelines, data.X, n_clusters=n_clusters, seed=seed)
        seconds = time.perf_counter() - t0
        scores = score_unsupervised(pipe, data.X)
        scores["fit_seconds"] = seconds
        preview = None
        if data.preview_X is not None and data.preview_mask is not None:
            values = pipe.predict(data.preview_X) if len(data.preview_X) else np.zeros(0)
            preview = preview_rgba(np.asarray(values), data.preview_mask, kind="cluster")
    return FitResult(pipe, scores, seconds, "kmeans", preview)


def member_of_key(key: Any) -> str:
    """``member-007`` from a task key ``fit-<run>-gen<g>-7`` (else the key itself)."""
    tail = str(key).rsplit("-", 1)[-1]
    if str(key).startswith("fit-consensus"):
        return "the consensus member"
    return f"member-{int(tail):03d}" if tail.isdigit() else str(key)


def gather_members(client: Any, futures: list[Any]) -> list[Any]:
    """The results of member tasks; a task that kept killing its workers is a ComputeError.

    Raises
    ------
    ComputeError
        Naming the member, when its task was tried on more workers than the cluster allows
        (``KilledWorker``): the fit itself crashes the process (memory, a native library).
    """
    from distributed.scheduler import KilledWorker

    try:
        return list(client.gather(futures))
    except Exception as err:
        # gather may surface a side effect first (a sibling task cancelled while workers
        # died): look among all member tasks for the one that kept killing its workers.
        exc = err if isinstance(err, KilledWorker) else _killed_worker(futures)
        if exc is None:
            raise
        for f in futures:
            f.cancel()
        raise ComputeError(
            f"{member_of_key(exc.task)} killed every dask worker that fitted it "
            f"({exc.allowed_failures + 1} tries): its fit crashes the worker process, most "
            f"often for lack of memory. Lower features.sample.size or the model's size, "
            f"give workers more memory (compute.memory_limit), or raise compute.retries if "
            f"workers die for other reasons"
        ) from None


def _killed_worker(futures: list[Any], *, wait_s: float = 10.0) -> Any:
    """The ``KilledWorker`` error of one of ``futures``, waiting briefly for it to land."""
    from distributed.scheduler import KilledWorker

    deadline = time.monotonic() + wait_s
    while True:
        for f in futures:
            if f.status == "error" and isinstance(f.exception(), KilledWorker):
                return f.exception()
        if time.monotonic() > deadline or all(f.status != "pending" for f in futures):
            return None
        time.sleep(0.1)


def _better(a: float, b: float, direction: str) -> bool:
    return a < b if direction == "minimize" else a > b


def _key(value: float, direction: str) -> float:
    """Smaller is better; NaN ranks last."""
    if value is None or not math.isfinite(value):
        return math.inf
    return value if direction == "minimize" else -value


def pareto_fronts(points: np.ndarray) -> np.ndarray:
    """Non-dominated sorting of ``(n, objectives)`` points where smaller is better; 1 = best."""
    n = len(points)
    front = np.zeros(n, dtype=np.int64)
    remaining = np.arange(n)
    level = 1
    while remaining.size:
        sub = points[remaining]
        dominated = np.array(
            [bool(np.any(np.all(sub <= p, axis=1) & np.any(sub < p, axis=1))) for p in sub]
        )
        front[remaining[~dominated]] = level
        remaining = remaining[dominated]
        level += 1
    return front


def rank_members(members: list[Member], objectives: list[tuple[str, str]]) -> None:
    """Set ``rank`` (1 = best) and ``front``: Pareto front first, then the primary metric."""
    if not members:
        return
    keys = np.array(
        [[_key(m.scores.get(metric, math.nan), d) for metric, d in objectives] for m in members]
    )
    fronts = pareto_fronts(keys) if len(objectives) > 1 else np.ones(len(members), np.int64)
    order = sorted(range(len(members)), key=lambda i: (fronts[i], keys[i, 0], members[i].number))
    for rank, i in enumerate(order, start=1):
        members[i].rank = rank
        members[i].front = int(fronts[i])


def select(members: list[Member], keep: int) -> list[Member]:
    """The ``keep`` best members by rank."""
    return sorted(members, key=lambda m: m.rank)[:keep]


def objectives_of(cfg: AppConfig) -> list[tuple[str, str]]:
    """``[(metric, direction), ...]``: the primary metric, then ``ensemble.objectives``."""
    ens = cfg.ensemble
    out = [(ens.metric, ens.direction.value)]
    out += [(o.metric, o.direction.value) for o in ens.objectives]
    return out


def member_spec(cfg: AppConfig) -> MemberSpec:
    """The shared build/fit/score recipe of ``cfg``'s members."""
    return MemberSpec(
        steps={k: (dict(v) if v is not None else None) for k, v in cfg.features.steps.items()},
        estimator=dict(cfg.model.estimator),
        impute=cfg.features.impute,
        kind=cfg.model.kind.value,
        threads=cfg.compute.threads_per_worker,
        partial_fit_batches=cfg.ensemble.partial_fit_batches,
        per_member_sample=cfg.ensemble.sample.value == "per_member",
        member_fraction=cfg.ensemble.member_fraction,
    )


def run_ensemble(
    data: TrainingData | np.ndarray,
    cfg: AppConfig,
    client: Any,
    *,
    on_generation: Callable[[int, list[Member]], None] | None = None,
) -> EnsembleResult:
    """Fit up to ``cfg.ensemble.generations`` generations of ``cfg.ensemble.size`` members.

    Parameters
    ----------
    data
        The training data (or just the sample ``(n, features)`` for clustering), sent to the
        workers once.
    cfg
        The validated config.
    client
        A ``distributed.Client``.
    on_generation
        Called with each finished generation's members (used to log them to MLflow as soon
        as they exist); the consensus member comes in a call of its own.
    """
    if isinstance(data, np.ndarray):
        data = TrainingData(X=data)
    ens = cfg.ensemble
    objectives = objectives_of(cfg)
    metric, direction = objectives[0]
    dists = distributions(cfg.model.space)
    spec = member_spec(cfg)
    study = optuna.create_study(
        directions=[
            StudyDirection.MINIMIZE if d == "minimize" else StudyDirection.MAXIMIZE
            for _, d in objectives
        ],
        sampler=NSGAIISampler(seed=cfg.seed, population_size=max(2, ens.size)),
    )
    defaults = defaults_in_space(spec.estimator, dists, spec.steps)
    if defaults:
        study.enqueue_trial(defaults)
    seeded = "random_state" in spec.estimator
    data_future = client.scatter(data, broadcast=True)
    run = uuid.uuid4().hex[:8]  # task keys unique per search: a client may serve several
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
        seeds: list[int] = []
        for trial in trials:
            params = dict(trial.params)
            seed = cfg.seed + trial.number
            if seeded:
                params["random_state"] = seed
            seeds.append(seed)
            # Build (not fit) here first: a parameter the estimator refuses is a ConfigError
            # now, not a task failure that dask would retry compute.retries times.
            build_pipeline(
                spec.steps,
                spec.estimator,
                impute=spec.impute,
                params=params,
                n_features=data.X.shape[1],
            )
            futures.append(
                client.submit(
                    fit_member,
                    data_future,
                    spec,
                    params,
                    seed,
                    pure=False,
                    key=f"fit-{run}-gen{gen}-{trial.number}",
                    # reruns a member whose fit raised; a member whose worker died is
                    # rescheduled by the scheduler (distributed.scheduler.allowed-failures)
                    retries=cfg.compute.retries,
                )
            )
        results: list[FitResult] = gather_members(client, futures)
        gen_members = []
        for trial, seed, res in zip(trials, seeds, results, strict=True):
            missing = [m for m, _ in objectives if m not in res.scores]
            if missing:
                raise ConfigError(
                    f"ensemble metric(s) {missing} are not computed for model.kind="
                    f"{spec.kind}: choose among {sorted(res.scores)}"
                )
            values = [res.scores[m] for m, _ in objectives]
            if all(math.isfinite(v) for v in values):
                study.tell(trial, values if len(values) > 1 else values[0])
            else:
                study.tell(trial, state=TrialState.FAIL)
            gen_members.append(
                Member(
                    number=trial.number,
                    generation=gen,
                    params=dict(trial.params),
                    scores=res.scores,
                    fit_seconds=res.seconds,
                    pipeline=res.pipeline,
                    seed=seed,
                    family=res.family,
                    preview=res.preview,
                )
            )
        members.extend(gen_members)
        rank_members(members, objectives)
        score = min(members, key=lambda m: _key(m.scores[metric], direction)).scores[metric]
        gen_score = min(gen_members, key=lambda m: _key(m.scores[metric], direction))
        improved = math.isnan(best) or _better(score, best, direction)
        if improved:
            best, stale = score, 0
        else:
            stale += 1
        history.append(
            {
                "generation": gen,
                "best": best,
                "generation_best": gen_score.scores[metric],
                "members": float(len(gen_members)),
                "improved": float(improved),
            }
        )
        if on_generation:
            on_generation(gen, gen_members)
        if stale >= ens.patience:
            break
    if ens.consensus.enabled:
        extra = _consensus(members, data_future, cfg, spec, client)
        if extra is not None:
            members.append(extra)
            rank_members(members, objectives)
            if on_generation:
                on_generation(extra.generation, [extra])
    return EnsembleResult(
        members=members,
        kept=select(members, ens.keep),
        history=history,
        metric=metric,
        objectives=objectives,
    )


def _consensus(
    members: list[Member], data_future: Any, cfg: AppConfig, spec: MemberSpec, client: Any
) -> Member | None:
    """The pooled-centroid member of the best ``ensemble.consensus.top`` K-Means members."""
    con = cfg.ensemble.consensus
    if spec.kind != "cluster":
        raise ConfigError(
            "ensemble.consensus.enabled=true needs clustering members (model.kind=cluster) "
            "with centroids: set it to false for supervised models"
        )
    top = [m for m in select(members, len(members)) if hasattr(m.pipeline[-1], "cluster_centers_")]
    top = top[: con.top]
    if len(top) < 2:
        raise ConfigError(
            "ensemble.consensus needs at least 2 members with cluster_centers_ (K-Means): "
            "use model=kmeans or set ensemble.consensus.enabled=false"
        )
    k = con.n_clusters or int(top[0].pipeline[-1].cluster_centers_.shape[0])
    future = client.submit(
        consensus_member,
        data_future,
        [m.pipeline for m in top],
        k,
        cfg.seed,
        spec.threads,
        pure=False,
        key=f"fit-consensus-{uuid.uuid4().hex[:8]}",
        retries=cfg.compute.retries,
    )
    res: FitResult = gather_members(client, [future])[0]
    return Member(
        number=max(m.number for m in members) + 1,
        generation=max(m.generation for m in members),
        params={"n_clusters": k, "consensus_of": ",".join(m.name for m in top)},
        scores=res.scores,
        fit_seconds=res.seconds,
        pipeline=res.pipeline,
        seed=cfg.seed,
        family=res.family,
        consensus=True,
        preview=res.preview,
    )
