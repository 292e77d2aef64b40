"""Fit ensembles over generations: Optuna proposes, dask fits, the metric(s) select.

Generation 0 holds the features steps' configured values of searched step parameters
(enqueued, when the space admits them) plus random draws from the space;
each later generation is a batch of proposals from Optuna's NSGA-II sampler (population =
``Search.size``), which recombines and mutates the best members so far and, with its mutation
probability, draws fresh values (elm's evolutionary search). Members of every generation stay
in the ranking, so the best score can only improve or stay. Identical proposals are not fitted
twice (with an empty ``Search.space`` members differ only by their seed). The search stops
early when the best primary score has not improved for ``Search.patience`` generations, or
when the space has nothing new to propose. With further ``Search.objectives`` the study is
multi-objective: members are ranked by Pareto front, then by the primary metric.

The training data (sample, labels, folds, preview grid) is scattered to the workers once; each
member is one task (:mod:`geoensemble.ensemble.member`) that builds, fits and scores its
pipeline and draws its map preview.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.samplers import NSGAIISampler
from optuna.study import StudyDirection
from optuna.trial import TrialState

from geoensemble.compute import out_of_memory
from geoensemble.ensemble import defaults
from geoensemble.ensemble.agreement import NAME as AGREEMENT
from geoensemble.ensemble.agreement import agreement_subset, mean_agreement
from geoensemble.ensemble.checks import check_members
from geoensemble.ensemble.member import (
    FitResult,
    MemberSpec,
    TrainingData,
    consensus_member,
    fit_member,
)
from geoensemble.ensemble.scoring import RANKING_ARGUMENTS, check_comparable, common_space
from geoensemble.ensemble.space import defaults_in_space, distributions, space_size
from geoensemble.errors import ComputeError, ConfigError

__all__ = [
    "EnsembleResult",
    "FitResult",
    "Member",
    "MemberSpec",
    "Search",
    "TrainingData",
    "fit_member",
    "rank_members",
    "run_ensemble",
    "select",
]

optuna.logging.set_verbosity(optuna.logging.WARNING)
log = logging.getLogger("geoensemble")

# Proposals in a row that repeat a fitted member before a generation stops asking.
MAX_REPEATS = 100


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


@dataclass(frozen=True)
class Search:
    """How an ensemble is searched (the train stage builds it from its settings).

    Attributes
    ----------
    space
        The searched parameters (``{param: [choices]}`` or ``{param: {low, high, ...}}``).
    size, generations, keep
        Members per generation, most generations, members kept (best first).
    objectives
        ``(metric, "minimize" | "maximize")`` pairs: the primary metric first.
    patience
        Generations without improvement of the primary metric before the search stops.
    seed
        Seeds the sampler and each member (``seed + trial number``).
    retries
        Reruns of a member task whose fit raised.
    consensus_top
        With a number, a consensus member pools the centroids of that many best K-Means
        members (``consensus_clusters`` clusters, default the best member's).
    """

    space: dict[str, Any] = field(default_factory=dict)
    size: int = defaults.SIZE
    generations: int = defaults.GENERATIONS
    keep: int = defaults.KEEP
    objectives: tuple[tuple[str, str], ...] = ((defaults.CRITERION, "minimize"),)
    patience: int = defaults.PATIENCE
    seed: int = 0
    retries: int = defaults.RETRIES
    consensus_top: int | None = None
    consensus_clusters: int | None = None


def member_of_key(key: Any) -> str:
    """``member-007`` from a task key ``fit-<run>-gen<g>-7`` (else the key itself)."""
    tail = str(key).rsplit("-", 1)[-1]
    if str(key).startswith("fit-consensus"):
        return "the consensus member"
    return f"member-{int(tail):03d}" if tail.isdigit() else str(key)


def gather_members(futures: list[Any]) -> list[Any]:
    """The results of member tasks, in the order of ``futures`` (see :func:`as_finished`)."""
    results: list[Any] = [None] * len(futures)
    for i, result in as_finished(futures):
        results[i] = result
    return results


def as_finished(futures: list[Any]) -> Iterator[tuple[int, Any]]:
    """``(index, result)`` of member tasks in the order they finish, so that a member can be
    logged while the others still fit.

    Raises
    ------
    ComputeError
        Naming the member, when its task was tried on more workers than the cluster allows
        (``KilledWorker``): the fit itself crashes the process (memory, a native library);
        or naming ``compute.memory_limit`` when workers were stopped for their memory.
    ConfigError
        Naming the member and its error, when its fit raised an error that every try would
        raise again (see :data:`~geoensemble.ensemble.member.DETERMINISTIC`).
    """
    from distributed import as_completed

    index = {f.key: i for i, f in enumerate(futures)}
    for future in as_completed(futures):
        try:
            result = future.result()
        except Exception as err:
            oom = out_of_memory(future.client)
            if oom is not None:
                for f in futures:
                    f.cancel()
                raise oom from None
            _raise_killed(err, futures)
            _raise_lost(err, future, futures)
            raise
        if isinstance(result, FitResult) and result.error:
            for f in futures:
                f.cancel()
            error = ConfigError(
                f"{member_of_key(future.key)} failed: {result.error}. The same error comes "
                f"on every try, so it is not retried: fix the value it names (a parameter of "
                f"the estimator, space or steps) or the data it refuses",
                arguments={
                    **result.arguments,
                    "space": "Search.space",
                    "steps": "ensemble_pipeline.steps",
                },
            )
            error.add_note(f"the worker's traceback:\n{result.trace}")
            raise error
        yield index[future.key], result


def _raise_killed(err: Exception, futures: list[Any]) -> None:
    """Raise a ComputeError naming the member that kept killing workers, if that is what
    ``err`` (or, surfacing first, a side effect of it) comes from."""
    from distributed.scheduler import KilledWorker

    # A side effect may surface first (a sibling task cancelled while workers died): look
    # among all member tasks for the one that kept killing its workers.
    exc = err if isinstance(err, KilledWorker) else _killed_worker(futures)
    if exc is None:
        return
    for f in futures:
        f.cancel()
    raise ComputeError(
        f"{member_of_key(exc.task)} killed every dask worker that fitted it "
        f"({exc.allowed_failures + 1} tries): its fit crashes the worker process, most "
        f"often for lack of memory. Lower the sample size (sample) or the model's size, "
        f"give workers more memory (memory_limit), or raise retries if workers die for "
        f"other reasons",
        arguments={
            "sample": "fit_ensemble.sample",
            "memory_limit": "Cluster.memory_limit",
            "retries": "Cluster.retries",
        },
    ) from None


def _raise_lost(err: Exception, future: Any, futures: list[Any]) -> None:
    """A member task the scheduler cancelled or forgot (its workers killed or lost over and
    over, the data they held gone with them) is one line, not an internal error."""
    import concurrent.futures

    if not isinstance(err, concurrent.futures.CancelledError):
        return
    for f in futures:
        f.cancel()
    raise ComputeError(
        f"{member_of_key(future.key)} was cancelled by the dask scheduler: its workers were "
        f"killed or lost while it ran, and the data they held went with them. Rerun; if "
        f"workers keep dying, check the machine's memory (memory_limit) or the cluster's "
        f"workers (address)",
        arguments={"memory_limit": "Cluster.memory_limit", "address": "Cluster.address"},
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


def run_ensemble(
    data: TrainingData | np.ndarray,
    spec: MemberSpec,
    search: Search,
    client: Any,
    *,
    on_generation: Callable[[int, list[Member]], None] | None = None,
    on_member: Callable[[Member], None] | None = None,
) -> EnsembleResult:
    """Fit up to ``search.generations`` generations of ``search.size`` members.

    Parameters
    ----------
    data
        The training data (or just the sample ``(n, features)`` for clustering), sent to the
        workers once.
    spec
        How every member is built, fitted and scored.
    search
        The space, sizes, objectives and seed of the search.
    client
        A ``distributed.Client`` whose workers are up (see
        :func:`geoensemble.compute.wait_for_workers`).
    on_generation
        Called with each finished generation's members; the consensus member comes in a
        call of its own.
    on_member
        Called with each member as soon as its task finishes, while the others still fit
        (used to log members to MLflow during the search); ranks are not final yet.
    """
    if isinstance(data, np.ndarray):
        data = TrainingData(X=data)
    objectives = list(search.objectives)
    dists = distributions(search.space)
    data = _checked_data(data, spec, search, objectives)
    n_space = space_size(dists)
    check_members(spec, search.space, search.size, data)
    study = _new_study(search, objectives, defaults_in_space(spec.configured, dists))
    fitting = _Fitting(
        spec=spec,
        search=search,
        client=client,
        data_future=_scatter(client, data),
        n_features=data.X.shape[1],
        run=uuid.uuid4().hex[:8],
        objectives=objectives,
        on_member=on_member,
        agreement_X=_agreement_X(data, spec, search),
    )
    members, history = _generations(fitting, study, dists, n_space, on_generation)
    if search.consensus_top is not None:
        _add_consensus(fitting, members, on_generation)
    return EnsembleResult(
        members=members,
        kept=select(members, search.keep),
        history=history,
        metric=objectives[0][0],
        objectives=objectives,
    )


@dataclass(frozen=True)
class _Fitting:
    """What every member task of one search shares."""

    spec: MemberSpec
    search: Search
    client: Any
    data_future: Any
    n_features: int
    run: str  # task keys unique per search: a client may serve several
    objectives: list[tuple[str, str]]
    on_member: Callable[[Member], None] | None
    # the sample rows every member labels for the agreement criterion (None: not computed)
    agreement_X: np.ndarray | None = None
    labels: dict[int, np.ndarray] = field(default_factory=dict)

    def score_agreement(self, members: list[Member]) -> None:
        """Set every member's ``agreement`` with the others (see
        :mod:`geoensemble.ensemble.agreement`), labelling the subset once per member."""
        if self.agreement_X is None:
            return
        for m in members:
            if m.number not in self.labels:
                self.labels[m.number] = np.asarray(m.pipeline.predict(self.agreement_X))
        values = mean_agreement([self.labels[m.number] for m in members], kind=self.spec.kind)
        for m, value in zip(members, values, strict=True):
            m.scores[AGREEMENT] = float(value)


def _agreement_X(data: TrainingData, spec: MemberSpec, search: Search) -> np.ndarray | None:
    """The rows of the sample the agreement criterion labels: clusterers and classifiers
    only (a regression has no labels to agree on)."""
    if spec.kind not in ("cluster", "classifier"):
        return None
    return data.X[agreement_subset(len(data.X), search.seed)]


@dataclass
class _Progress:
    """The best primary score so far, generations without improvement and the history."""

    metric: str
    direction: str
    generations: int
    best: float = math.nan
    stale: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def record(self, gen: int, members: list[Member], gen_members: list[Member]) -> None:
        """Score generation ``gen`` (its ``gen_members`` among all ``members``) and log it."""
        metric, direction = self.metric, self.direction
        score = min(members, key=lambda m: _key(m.scores[metric], direction)).scores[metric]
        gen_score = min(gen_members, key=lambda m: _key(m.scores[metric], direction))
        improved = math.isnan(self.best) or _better(score, self.best, direction)
        if improved:
            self.best, self.stale = score, 0
        else:
            self.stale += 1
        self.history.append(
            {
                "generation": gen,
                "best": self.best,
                "generation_best": gen_score.scores[metric],
                "members": float(len(gen_members)),
                "improved": float(improved),
            }
        )
        log.info(
            "train: generation %d of %d: %d member(s) fitted, best %s so far %.6g%s",
            gen + 1,
            self.generations,
            len(gen_members),
            metric,
            self.best,
            "" if improved else f" (no better for {self.stale} generation(s))",
        )


def _checked_data(
    data: TrainingData, spec: MemberSpec, search: Search, objectives: list[tuple[str, str]]
) -> TrainingData:
    """``data`` once the objectives are known comparable, with the clustering common space."""
    metric = objectives[0][0]
    _check_directions(objectives, spec.kind)
    check_comparable(
        [("criterion", metric)]
        + [(f"objectives[{i}].metric", m) for i, (m, _) in enumerate(objectives[1:])],
        kind=spec.kind,
        space=dict(search.space),
        per_member_sample=spec.per_member_sample,
    )
    if spec.kind == "cluster" and data.common is None:
        # Every member is scored in this one space (see geoensemble.ensemble.scoring).
        data = dataclasses.replace(
            data, common=common_space(data.X, impute=spec.impute, impute_value=spec.impute_value)
        )
    return data


def _check_directions(objectives: list[tuple[str, str]], kind: str) -> None:
    """Refuse ranking a score the wrong way round (the best member would be the worst)."""
    for i, (metric, direction) in enumerate(objectives):
        key = "direction" if i == 0 else f"objectives[{i - 1}].direction"
        wanted = defaults.direction_of(metric)
        if metric in defaults.MAXIMIZE | defaults.MINIMIZE and direction != wanted:
            raise ConfigError(
                f"{key}={direction}: {metric} is better when "
                f"{'larger' if wanted == 'maximize' else 'smaller'}: set {key}={wanted}",
                arguments=RANKING_ARGUMENTS,
            )
        if metric == AGREEMENT and kind not in ("cluster", "classifier"):
            raise ConfigError(
                f"criterion={metric} compares members' labels: kind={kind} has none; rank "
                f"regressors by rmse (minimize) or r2 (maximize)",
                arguments=RANKING_ARGUMENTS,
            )


def _new_study(
    search: Search, objectives: list[tuple[str, str]], defaults: dict[str, Any]
) -> optuna.Study:
    """An NSGA-II study with one direction per objective, ``defaults`` its first trial."""
    study = optuna.create_study(
        directions=[
            StudyDirection.MINIMIZE if d == "minimize" else StudyDirection.MAXIMIZE
            for _, d in objectives
        ],
        sampler=NSGAIISampler(seed=search.seed, population_size=max(2, search.size)),
    )
    if defaults:
        study.enqueue_trial(defaults)
    return study


def _scatter(client: Any, data: TrainingData) -> Any:
    """The future of ``data`` broadcast to every worker."""
    try:
        return client.scatter(data, broadcast=True)
    except Exception:
        oom = out_of_memory(client)  # a worker stopped for its memory while receiving
        if oom is not None:
            raise oom from None
        raise


def _generations(
    fitting: _Fitting,
    study: optuna.Study,
    dists: dict[str, Any],
    n_space: int | None,
    on_generation: Callable[[int, list[Member]], None] | None,
) -> tuple[list[Member], list[dict[str, float]]]:
    """Every member fitted and the per-generation history, generation after generation
    until ``search.generations``, the patience or the space runs out."""
    search = fitting.search
    seen: set[tuple[tuple[str, Any], ...]] = set()
    members: list[Member] = []
    metric, direction = fitting.objectives[0]
    progress = _Progress(metric, direction, search.generations)
    for gen in range(search.generations):
        trials = _propose(study, dists, seen, search.size, n_space)
        if len(trials) < search.size:
            _log_short(gen, len(trials), search.size, n_space, len(seen) - len(trials))
        if not trials:
            break
        # Members are numbered in the order they are created: Optuna's trial numbers have
        # gaps where a repeated proposal was dropped.
        numbers = [len(members) + i for i in range(len(trials))]
        gen_members = _fit_generation(fitting, gen, trials, numbers)
        members.extend(gen_members)
        fitting.score_agreement(members)  # before the study hears it: it may be the metric
        _tell(study, trials, gen_members, fitting.objectives)
        rank_members(members, fitting.objectives)
        progress.record(gen, members, gen_members)
        if on_generation:
            on_generation(gen, gen_members)
        if progress.stale >= search.patience:
            break
    return members, progress.history


def _log_short(gen: int, n_new: int, size: int, n_space: int | None, n_fitted: int) -> None:
    """Say that generation ``gen`` has fewer new members than ``size``."""
    log.info(
        "train: generation %d: %d new member(s) for size=%d; space "
        "(%s distinct members, %d fitted) has none other the search can propose%s",
        gen,
        n_new,
        size,
        n_space if n_space is not None else "unbounded",
        n_fitted,
        "; the search stops" if not n_new else "",
        extra={"arguments": {"size": "Search.size", "space": "Search.space"}},
    )


def _fit_generation(
    fitting: _Fitting, gen: int, trials: list[optuna.trial.Trial], numbers: list[int]
) -> list[Member]:
    """The members of generation ``gen`` (in the order of ``trials``), each passed to
    ``on_member`` as soon as its task finishes."""
    futures, seeds = _submit_members(fitting, gen, trials, numbers)
    done: dict[int, Member] = {}
    for i, res in as_finished(futures):
        _check_scores(res, fitting)
        done[i] = Member(
            number=numbers[i],
            generation=gen,
            params=dict(trials[i].params),
            scores=res.scores,
            fit_seconds=res.seconds,
            pipeline=res.pipeline,
            seed=seeds[i],
            family=res.family,
            preview=res.preview,
        )
        if fitting.on_member:
            fitting.on_member(done[i])
    return [done[i] for i in range(len(trials))]


def _submit_members(
    fitting: _Fitting, gen: int, trials: list[optuna.trial.Trial], numbers: list[int]
) -> tuple[list[Any], list[int]]:
    """The futures of the member tasks of ``trials`` and the seed of each."""
    spec, search = fitting.spec, fitting.search
    futures = []
    seeds: list[int] = []
    for number, trial in zip(numbers, trials, strict=True):
        params = dict(trial.params)
        seed = search.seed + trial.number
        if spec.seeded:
            params["random_state"] = seed
        seeds.append(seed)
        # Build (not fit) here first: a parameter the estimator refuses is a ConfigError
        # now, not a task failure that dask would retry Search.retries times.
        spec.build(params, n_features=fitting.n_features)
        futures.append(
            fitting.client.submit(
                fit_member,
                fitting.data_future,
                spec,
                params,
                seed,
                pure=False,
                key=f"fit-{fitting.run}-gen{gen}-{number}",
                # reruns a member whose fit raised; a member whose worker died is
                # rescheduled by the scheduler (distributed.scheduler.allowed-failures)
                retries=search.retries,
            )
        )
    return futures, seeds


def _check_scores(res: FitResult, fitting: _Fitting) -> None:
    """Raise a ConfigError when a metric of the objectives was not computed."""
    # agreement is computed once the generation is in (it needs the other members)
    missing = [m for m, _ in fitting.objectives if m not in res.scores and m != AGREEMENT]
    if missing:
        raise ConfigError(
            f"ensemble metric(s) {missing} are not computed for kind={fitting.spec.kind}: "
            f"choose among {sorted(res.scores)} (for criterion and objectives)",
            arguments=RANKING_ARGUMENTS,
        )


def _tell(
    study: optuna.Study,
    trials: list[optuna.trial.Trial],
    members: list[Member],
    objectives: list[tuple[str, str]],
) -> None:
    """Report each member's objective values to the study (a non-finite one fails it)."""
    for trial, member in zip(trials, members, strict=True):
        values = [member.scores[m] for m, _ in objectives]
        if all(math.isfinite(v) for v in values):
            study.tell(trial, values if len(values) > 1 else values[0])
        else:
            study.tell(trial, state=TrialState.FAIL)


def _add_consensus(
    fitting: _Fitting,
    members: list[Member],
    on_generation: Callable[[int, list[Member]], None] | None,
) -> None:
    """Append the consensus member to ``members`` (ranked again) and report it."""
    extra = _consensus(members, fitting.data_future, fitting.search, fitting.spec, fitting.client)
    if extra is None:
        return
    members.append(extra)
    fitting.score_agreement(members)
    rank_members(members, fitting.objectives)
    if fitting.on_member:
        fitting.on_member(extra)
    if on_generation:
        on_generation(extra.generation, [extra])


def _propose(
    study: optuna.Study,
    dists: dict[str, Any],
    seen: set[tuple[tuple[str, Any], ...]],
    size: int,
    n_space: int | None,
) -> list[optuna.trial.Trial]:
    """Up to ``size`` trials whose parameters were never fitted (added to ``seen``).

    Asking stops once the space is exhausted (``n_space`` members seen) or after
    :data:`MAX_REPEATS` proposals in a row repeat a fitted member: each ask costs more as
    the study grows, and a sampler that keeps repeating itself has nothing new to offer.
    """
    trials: list[optuna.trial.Trial] = []
    repeats = 0
    while len(trials) < size and repeats < MAX_REPEATS:
        if n_space is not None and len(seen) >= n_space:
            break
        trial = study.ask(dists)
        key = tuple(sorted(trial.params.items()))
        if key in seen and dists:  # an empty space: members differ by their seed alone
            study.tell(trial, state=TrialState.FAIL)  # duplicate: not worth a fit
            repeats += 1
            continue
        repeats = 0
        seen.add(key)
        trials.append(trial)
    return trials


def _consensus(
    members: list[Member], data_future: Any, search: Search, spec: MemberSpec, client: Any
) -> Member | None:
    """The pooled-centroid member of the best ``search.consensus_top`` K-Means members."""
    if spec.kind != "cluster":
        raise ConfigError(
            "a consensus member (consensus_top) needs clustering members (kind=cluster) with "
            "centroids: turn consensus_top off for supervised models",
            arguments={"consensus_top": "Search.consensus_top", "kind": "MemberSpec.kind"},
        )
    top = [m for m in select(members, len(members)) if hasattr(m.pipeline[-1], "cluster_centers_")]
    top = top[: search.consensus_top]
    if len(top) < 2:
        raise ConfigError(
            "a consensus member (consensus_top) needs at least 2 members with "
            "cluster_centers_ (K-Means): use a K-Means estimator or turn consensus_top off",
            arguments={"consensus_top": "Search.consensus_top"},
        )
    k = search.consensus_clusters or int(top[0].pipeline[-1].cluster_centers_.shape[0])
    future = client.submit(
        consensus_member,
        data_future,
        [m.pipeline for m in top],
        k,
        search.seed,
        spec.threads,
        pure=False,
        key=f"fit-consensus-{uuid.uuid4().hex[:8]}",
        retries=search.retries,
    )
    res: FitResult = gather_members([future])[0]
    return Member(
        number=max(m.number for m in members) + 1,
        generation=max(m.generation for m in members),
        params={"n_clusters": k, "consensus_of": ",".join(m.name for m in top)},
        scores=res.scores,
        fit_seconds=res.seconds,
        pipeline=res.pipeline,
        seed=search.seed,
        family=res.family,
        consensus=True,
        preview=res.preview,
    )
