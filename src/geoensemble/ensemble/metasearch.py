"""The ensemble search as a scikit-learn meta-estimator.

:class:`EnsembleSearch` fits generations of members, each a ``clone`` of one estimator with
parameters drawn from ``param_distributions`` (as ``RandomizedSearchCV`` takes them), scores
each member, keeps the best, and exposes ``members_``, ``best_estimator_`` and a
``cv_results_`` table. It is an ordinary estimator: it clones, sits in a ``Pipeline`` and runs
inside ``cross_val_score``.

Criteria
--------
``"aic"`` / ``"bic"`` rank clusterers by the partition criterion of
:mod:`geoensemble.ensemble.scoring`: every member's ``predict`` labels of the training data are
scored in one common space (the input standardized once), so members with different
transformed spaces and numbers of clusters compare; lower is better. Any other string is a
scikit-learn scorer name (``"accuracy"``, ``"neg_log_loss"``, ``"r2"``...) and a callable
``f(estimator, X, y) -> float`` a scorer of its own; both are averaged over the test folds of
``cv`` (the member is then refit on all the data) and higher is better.

Distributed fits
----------------
With ``client`` (a ``distributed.Client``) the data are scattered to every worker once and each
member's fit and score is one task. Members travel by dask's pickling, which falls back to
cloudpickle for classes defined in ``__main__`` (a notebook cell). Without a client members fit
one after the other in this process. A member whose fit raises stops the search with that error
(no retry), its parameters added to the message.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone, is_classifier, is_regressor
from sklearn.metrics import get_scorer
from sklearn.model_selection import ParameterGrid, ParameterSampler, check_cv, cross_validate
from sklearn.utils import check_random_state, get_tags, indexable
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from geoensemble.ensemble.scoring import common_space, partition_information

# Criteria computed from the partition of the training data (lower is better), not from CV.
PARTITION_CRITERIA = ("aic", "bic")
SAMPLERS = ("random", "nsga2")
# NSGA-II proposals that repeat a fitted member are dropped; after this many per wanted member
# in a row the space is taken as exhausted for this generation.
MAX_REPEATS = 20
_SEED_MAX = np.iinfo(np.int32).max


@dataclass(frozen=True)
class _Data:
    """What every member task reads (scattered once to the workers)."""

    X: Any
    y: Any
    common: np.ndarray | None  # the common space of the partition criteria
    splits: list[tuple[np.ndarray, np.ndarray]] | None  # CV folds of scorer criteria


@dataclass(frozen=True)
class _Fitted:
    """One member's result: the estimator fitted on all data and its criterion value."""

    estimator: Any
    score: float
    std: float
    fit_time: float

    def numbers(self) -> _Fitted:
        """The same result without the fitted estimator."""
        return dataclasses.replace(self, estimator=None)


def _fit_and_score(member: Any, data: _Data, criterion: str | Callable[..., float]) -> _Fitted:
    """Fit ``member`` on all of ``data`` and compute its criterion (runs on a worker)."""
    if isinstance(criterion, str) and criterion in PARTITION_CRITERIA:
        assert data.common is not None
        start = time.perf_counter()
        member.fit(data.X) if data.y is None else member.fit(data.X, data.y)
        fit_time = time.perf_counter() - start
        info = partition_information(data.common, np.asarray(member.predict(data.X)))
        return _Fitted(member, float(info[criterion]), float("nan"), fit_time)
    scorer = get_scorer(criterion) if isinstance(criterion, str) else criterion
    cv = cross_validate(member, data.X, data.y, cv=data.splits, scoring=scorer, error_score="raise")
    member.fit(data.X) if data.y is None else member.fit(data.X, data.y)
    scores = np.asarray(cv["test_score"], dtype=np.float64)
    return _Fitted(member, float(scores.mean()), float(scores.std()), float(cv["fit_time"].mean()))


def _search_estimator_has(attr: str) -> Callable[[EnsembleSearch], bool]:
    """Whether ``attr`` can be delegated: on the best member once fitted, else the estimator."""

    def check(self: EnsembleSearch) -> bool:
        # getattr raises AttributeError when the method is missing: available_if hides it
        getattr(self.best_estimator_ if hasattr(self, "best_estimator_") else self.estimator, attr)
        return True

    return check


class EnsembleSearch(MetaEstimatorMixin, BaseEstimator):
    """Generations of members of one estimator, ranked by a criterion; the best are kept.

    Generation 0 draws ``n_members`` parameter sets from ``param_distributions`` with
    scikit-learn's ``ParameterSampler``. Each later generation proposes ``n_members`` new ones:
    fresh draws (``sampler="random"``) or NSGA-II offspring of the members fitted so far
    (``sampler="nsga2"``, Optuna's ``NSGAIISampler``). A parameter set already fitted is not
    proposed again; the search stops early when the space has no new member left.

    Parameters
    ----------
    estimator
        The estimator (often a ``Pipeline``) every member clones.
    param_distributions
        ``{name: list or scipy.stats distribution}`` as for ``RandomizedSearchCV``, names as
        ``set_params`` takes them (``"kmeans__n_clusters"``). With ``sampler="random"`` a list
        of such dicts is accepted too. With ``"nsga2"`` a list is a categorical choice and a
        frozen scipy distribution is searched uniformly over its finite support (log-uniformly
        for ``loguniform``).
    n_members
        Members proposed per generation.
    generations
        Number of generations.
    keep
        How many of the best members are kept (``members_``).
    criterion
        ``"aic"`` or ``"bic"`` (clusterers, lower is better), a scikit-learn scorer name, or a
        callable ``f(estimator, X, y) -> float`` (higher is better); see the module docstring.
    cv
        Splitter, number of folds or ``None`` (5 folds), as ``check_cv`` takes it; used by
        scorer criteria only. ``groups`` given to ``fit`` reach its ``split`` (e.g.
        :class:`~geoensemble.ensemble.spatialcv.SpatialBlockCV` coordinates).
    sampler
        ``"random"`` or ``"nsga2"``.
    random_state
        Seed of the draws, of NSGA-II and of the members: every member parameter named
        ``random_state`` or ``*__random_state`` that is not searched and is left at ``None``
        gets a seed derived from it (a seed you set on the estimator is kept). An int gives
        the same members and scores on every fit.
    client
        A ``distributed.Client`` to fit the members on, or ``None`` to fit them here. The
        client is shared, not copied, by ``clone``; a pickled search drops it.

    Attributes
    ----------
    cv_results_ : dict of numpy.ndarray
        One row per fitted member, in fitting order: ``param_<name>`` for every searched name
        (masked where a member's parameter dict lacks it), ``params``, ``generation``,
        ``mean_fit_time`` (the full-data fit for ``aic``/``bic``, the mean fold fit for
        scorers), the criterion under its own name (``aic``, ``bic``, or ``mean_test_<scorer>``
        and ``std_test_<scorer>``, ``mean_test_score`` for a callable) and ``rank`` (1 = best).
    score_name_ : str
        The key of the criterion in ``cv_results_``.
    members_ : list
        The ``keep`` best fitted members over all generations, best first.
    best_estimator_, best_params_, best_score_, best_index_
        The best member, its searched parameters, its criterion value (the lowest AIC/BIC or
        the highest mean test score) and its row in ``cv_results_``.
    n_splits_ : int
        Number of CV folds (0 for ``aic``/``bic``).
    n_features_in_ : int
    feature_names_in_ : numpy.ndarray
        Only when ``X`` has string column names (a DataFrame).

    Examples
    --------
    >>> from sklearn.cluster import KMeans
    >>> from sklearn.datasets import make_blobs
    >>> X, _ = make_blobs(300, centers=3, random_state=0)
    >>> search = EnsembleSearch(
    ...     KMeans(n_init=1), {"n_clusters": [2, 3, 4, 5]}, n_members=2, random_state=0
    ... ).fit(X)
    >>> search.best_params_
    {'n_clusters': 3}
    """

    def __init__(
        self,
        estimator: Any,
        param_distributions: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        n_members: int = 4,
        generations: int = 2,
        keep: int = 3,
        criterion: str | Callable[..., float] = "aic",
        cv: Any = None,
        sampler: str = "random",
        random_state: int | np.random.RandomState | None = None,
        client: Any = None,
    ) -> None:
        self.estimator = estimator
        self.param_distributions = param_distributions
        self.n_members = n_members
        self.generations = generations
        self.keep = keep
        self.criterion = criterion
        self.cv = cv
        self.sampler = sampler
        self.random_state = random_state
        self.client = client

    # -- scikit-learn protocol -------------------------------------------------------------

    def __sklearn_tags__(self) -> Any:
        # As BaseSearchCV: the search is whatever kind of estimator its members are.
        tags = super().__sklearn_tags__()
        sub = get_tags(self.estimator)
        tags.estimator_type = sub.estimator_type
        tags.classifier_tags = copy.deepcopy(sub.classifier_tags)
        tags.regressor_tags = copy.deepcopy(sub.regressor_tags)
        tags.transformer_tags = copy.deepcopy(sub.transformer_tags)
        tags.target_tags = copy.deepcopy(sub.target_tags)
        tags.input_tags.pairwise = sub.input_tags.pairwise
        tags.input_tags.sparse = sub.input_tags.sparse
        tags.input_tags.allow_nan = sub.input_tags.allow_nan
        return tags

    def __sklearn_clone__(self) -> EnsembleSearch:
        # clone() deep-copies non-estimator parameters, and a dask Client cannot be copied:
        # a clone shares the caller's client (a connection, not state of the search).
        params = {
            k: clone(v, safe=False) for k, v in self.get_params(deep=False).items() if k != "client"
        }
        return type(self)(**params, client=self.client)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state["client"] = None  # a live connection does not pickle; see the class docstring
        return state

    # -- fit -------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any = None, groups: Any = None) -> EnsembleSearch:
        """Fit the generations of members and keep the best.

        Parameters
        ----------
        X
            ``(n_samples, n_features)`` training data (array, sparse matrix or DataFrame; the
            members see it as given).
        y
            Targets, or ``None`` for clusterers.
        groups
            Passed to ``cv.split`` (scorer criteria), e.g. ``(n_samples, 2)`` pixel
            coordinates for :class:`~geoensemble.ensemble.spatialcv.SpatialBlockCV`.

        Returns
        -------
        EnsembleSearch
            ``self``, fitted.

        Raises
        ------
        ValueError
            Naming the argument that is out of range or does not fit the estimator.
        """
        self._check_arguments()
        if y is None and get_tags(self.estimator).target_tags.required:
            raise ValueError(
                f"{type(self.estimator).__name__} requires y to be passed, but the target y is None"
            )
        X, y, groups = indexable(X, y, groups)
        validate_data(self, X, skip_check_array=True)  # n_features_in_, feature_names_in_
        data = self._data(X, y, groups)
        rng = check_random_state(self.random_state)
        minimize = self.criterion in PARTITION_CRITERIA
        proposer = _Proposer(self.param_distributions, self.sampler, self.n_members, rng, minimize)
        rows: list[dict[str, Any]] = []
        kept: list[tuple[float, int, Any]] = []
        with proposer, _Executor(self.client, data, self.criterion) as execute:
            for gen in range(self.generations):
                candidates = proposer.propose(gen)
                if not candidates:
                    break  # every member the space allows is fitted
                members = [
                    self._member(params, int(rng.randint(_SEED_MAX))) for params in candidates
                ]
                fitted = execute(members, candidates, start=len(rows))
                proposer.tell([f.score for f in fitted])
                for params, res in zip(candidates, fitted, strict=True):
                    # rows hold numbers only: members outside the best `keep` are let go
                    rows.append({"params": params, "generation": gen, "result": res.numbers()})
                    kept.append((self._sort_key(res.score), len(rows) - 1, res.estimator))
                kept = sorted(kept, key=lambda t: (t[0], t[1]))[: self.keep]
        self._set_results(rows, kept, data)
        return self

    def _check_arguments(self) -> None:
        """Raise ``ValueError``/``TypeError`` naming the first bad constructor argument."""
        for name in ("n_members", "generations", "keep"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name}={value!r} must be an integer >= 1")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler={self.sampler!r} must be one of {', '.join(SAMPLERS)}")
        if self.sampler == "nsga2" and not isinstance(self.param_distributions, Mapping):
            raise ValueError("param_distributions must be one dict with sampler='nsga2'")
        if self.criterion in PARTITION_CRITERIA:
            self._check_partition_criterion()
        elif isinstance(self.criterion, str):
            try:
                get_scorer(self.criterion)
            except ValueError as exc:
                raise ValueError(
                    f"criterion={self.criterion!r} is neither 'aic', 'bic' nor a scikit-learn "
                    f"scorer name (sklearn.metrics.get_scorer_names())"
                ) from exc
        elif not callable(self.criterion):
            raise TypeError(
                f"criterion={self.criterion!r} must be 'aic', 'bic', a scorer name or a "
                f"callable f(estimator, X, y) -> float"
            )

    def _check_partition_criterion(self) -> None:
        """``aic``/``bic`` score a clusterer's partition of the training data, without CV."""
        if is_classifier(self.estimator) or is_regressor(self.estimator):
            raise ValueError(
                f"criterion={self.criterion!r} scores a clusterer's partition; for a "
                f"supervised estimator use a scorer such as 'accuracy', 'neg_log_loss' or 'r2'"
            )
        if not hasattr(self.estimator, "predict"):
            raise ValueError(
                f"criterion={self.criterion!r} scores the labels of the members' predict(), "
                f"which {type(self.estimator).__name__} does not have"
            )
        if self.cv is not None:
            raise ValueError(
                f"cv={self.cv!r} is not used by criterion={self.criterion!r} (computed on the "
                f"whole training data): leave cv=None, or rank by a scorer"
            )

    def _data(self, X: Any, y: Any, groups: Any) -> _Data:
        """The data every member reads: the common space or the CV folds."""
        if self.criterion in PARTITION_CRITERIA:
            Z = check_array(X, accept_sparse=True, dtype=np.float64, ensure_all_finite="allow-nan")
            Z = Z.toarray() if hasattr(Z, "toarray") else Z
            self.n_splits_ = 0
            return _Data(X, y, common_space(Z), None)
        cv = check_cv(self.cv, y, classifier=is_classifier(self.estimator))
        splits = list(cv.split(X, y, groups))  # one set of folds for every member
        self.n_splits_ = len(splits)
        return _Data(X, y, None, splits)

    def _member(self, params: dict[str, Any], seed: int) -> Any:
        """``clone(estimator)`` with ``params`` and ``seed`` in its unset random states."""
        member = clone(self.estimator).set_params(**params)
        searched = _searched_names(self.param_distributions)
        seeds = {
            name: seed
            for name, value in member.get_params(deep=True).items()
            if (name == "random_state" or name.endswith("__random_state"))
            and name not in searched
            and value is None
        }
        return member.set_params(**seeds)

    def _sort_key(self, score: float) -> float:
        """Ascending key: the best member first, a NaN score last."""
        if not np.isfinite(score):
            return float("inf")
        return score if self.criterion in PARTITION_CRITERIA else -score

    def _score_name(self) -> str:
        if self.criterion in PARTITION_CRITERIA:
            return str(self.criterion)
        return (
            f"mean_test_{self.criterion}" if isinstance(self.criterion, str) else "mean_test_score"
        )

    def _set_results(self, rows: list[dict[str, Any]], kept: list[Any], data: _Data) -> None:
        """``cv_results_`` and the ``best_*``/``members_`` attributes."""
        results: dict[str, Any] = dict(_param_columns([r["params"] for r in rows]))
        results["params"] = [r["params"] for r in rows]
        results["generation"] = np.array([r["generation"] for r in rows], dtype=np.int64)
        results["mean_fit_time"] = np.array([r["result"].fit_time for r in rows])
        scores = np.array([r["result"].score for r in rows], dtype=np.float64)
        self.score_name_ = self._score_name()
        results[self.score_name_] = scores
        if data.splits is not None:
            results[self.score_name_.replace("mean_", "std_", 1)] = np.array(
                [r["result"].std for r in rows]
            )
        keys = np.array([self._sort_key(s) for s in scores])
        results["rank"] = rankdata(keys, method="min").astype(np.int32)
        self.cv_results_ = results
        self.members_ = [est for _, _, est in kept]
        self.best_index_ = int(kept[0][1])
        self.best_estimator_ = self.members_[0]
        self.best_params_ = rows[self.best_index_]["params"]
        self.best_score_ = float(scores[self.best_index_])

    # -- delegation to the best member -----------------------------------------------------

    @property
    def classes_(self) -> Any:
        """The best member's ``classes_`` (classifiers only)."""
        check_is_fitted(self)
        return self.best_estimator_.classes_

    @property
    def labels_(self) -> Any:
        """The best member's ``labels_`` of the training data (clusterers that keep them)."""
        check_is_fitted(self)
        return self.best_estimator_.labels_

    @available_if(_search_estimator_has("predict"))
    def predict(self, X: Any) -> Any:
        """``best_estimator_.predict(X)``."""
        check_is_fitted(self)
        return self.best_estimator_.predict(X)

    @available_if(_search_estimator_has("predict_proba"))
    def predict_proba(self, X: Any) -> Any:
        """``best_estimator_.predict_proba(X)``."""
        check_is_fitted(self)
        return self.best_estimator_.predict_proba(X)

    @available_if(_search_estimator_has("predict_log_proba"))
    def predict_log_proba(self, X: Any) -> Any:
        """``best_estimator_.predict_log_proba(X)``."""
        check_is_fitted(self)
        return self.best_estimator_.predict_log_proba(X)

    @available_if(_search_estimator_has("decision_function"))
    def decision_function(self, X: Any) -> Any:
        """``best_estimator_.decision_function(X)``."""
        check_is_fitted(self)
        return self.best_estimator_.decision_function(X)

    @available_if(_search_estimator_has("transform"))
    def transform(self, X: Any) -> Any:
        """``best_estimator_.transform(X)``."""
        check_is_fitted(self)
        return self.best_estimator_.transform(X)

    @available_if(_search_estimator_has("transform"))
    def fit_transform(self, X: Any, y: Any = None, groups: Any = None) -> Any:
        """Fit the search, then ``best_estimator_.transform(X)``."""
        return self.fit(X, y, groups).best_estimator_.transform(X)

    @available_if(_search_estimator_has("score"))
    def score(self, X: Any, y: Any = None) -> float:
        """``best_estimator_.score(X, y)`` (the estimator's own score, not the criterion)."""
        check_is_fitted(self)
        return float(self.best_estimator_.score(X, y))

    @available_if(_search_estimator_has("fit_predict"))
    def fit_predict(self, X: Any, y: Any = None, groups: Any = None) -> Any:
        """Fit the search, then the best member's labels of ``X`` (its ``labels_`` if kept)."""
        self.fit(X, y, groups)
        best = self.best_estimator_
        return best.labels_ if hasattr(best, "labels_") else best.predict(X)


class _Executor:
    """Fits and scores members: tasks on a dask client, or one after the other here.

    A context manager: with a client the data are scattered to every worker on entry (once
    per fit, under a key of their own) and released on exit.
    """

    def __init__(self, client: Any, data: _Data, criterion: str | Callable[..., float]) -> None:
        self.client = client
        self.data = data
        self.criterion = criterion
        self.data_future: Any = None
        self.run = uuid.uuid4().hex[:8]  # task keys unique per fit: a client may serve several

    def __enter__(self) -> _Executor:
        if self.client is not None:
            self.data_future = self.client.scatter(self.data, broadcast=True, hash=False)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.data_future is not None:
            self.client.cancel([self.data_future])
            self.data_future = None

    def __call__(
        self, members: list[Any], params: list[dict[str, Any]], *, start: int
    ) -> list[_Fitted]:
        """``members`` fitted and scored, in order; the first member that raises stops all."""
        if self.client is None:
            out = []
            for i, (member, p) in enumerate(zip(members, params, strict=True)):
                try:
                    out.append(_fit_and_score(member, self.data, self.criterion))
                except Exception as exc:
                    raise _member_error(exc, start + i, p) from exc
            return out
        futures = [
            self.client.submit(
                _fit_and_score,
                member,
                self.data_future,
                self.criterion,
                key=f"ensemble-search-{self.run}-{start + i}",
                retries=0,  # a fit that raises is deterministic: raise it once
            )
            for i, member in enumerate(members)
        ]
        try:
            return [self._result(f, start + i, params[i]) for i, f in enumerate(futures)]
        except BaseException:
            self.client.cancel(futures)  # the others' results are of no use now
            raise

    @staticmethod
    def _result(future: Any, index: int, params: dict[str, Any]) -> _Fitted:
        try:
            return future.result()
        except Exception as exc:
            raise _member_error(exc, index, params) from exc


def _member_error(exc: Exception, index: int, params: dict[str, Any]) -> Exception:
    """``exc`` again, of the same type, with the member's parameters in its message."""
    where = f"(EnsembleSearch member {index}, params {params!r})"
    try:
        new = type(exc)(f"{exc} {where}")
    except Exception:
        new = None
    if new is None or where not in str(new):
        # an exception class that does not take one message: say it in a note instead
        exc.add_note(where)
        return exc
    return new


def _searched_names(param_distributions: Any) -> set[str]:
    dicts = (
        [param_distributions] if isinstance(param_distributions, Mapping) else param_distributions
    )
    return {name for d in dicts for name in d}


def _param_columns(params: list[dict[str, Any]]) -> Iterator[tuple[str, np.ma.MaskedArray]]:
    """``param_<name>`` masked object arrays, as ``RandomizedSearchCV``'s ``cv_results_``."""
    for name in sorted({k for p in params for k in p}):
        column = np.ma.MaskedArray(np.empty(len(params), dtype=object), mask=True)
        for i, p in enumerate(params):
            if name in p:
                column[i] = p[name]
        yield f"param_{name}", column


def _all_lists(param_distributions: Any) -> bool:
    """Whether every entry is a list of values (a finite grid), none a distribution."""
    dicts = (
        [param_distributions] if isinstance(param_distributions, Mapping) else param_distributions
    )
    return all(not hasattr(v, "rvs") for d in dicts for v in d.values())


def _key(params: Mapping[str, Any]) -> str:
    """Identity of a parameter set (values may be unhashable, e.g. estimators)."""
    return repr(sorted(params.items()))


class _Proposer:
    """The parameter sets of each generation, drawn at random or by NSGA-II (Optuna).

    A context manager: with NSGA-II it silences Optuna's per-trial log lines while it is
    open and restores the caller's verbosity afterwards.
    """

    def __init__(
        self,
        param_distributions: Any,
        sampler: str,
        n: int,
        rng: np.random.RandomState,
        minimize: bool,
    ) -> None:
        self.space = param_distributions
        self.sampler = sampler
        self.n = n
        self.rng = rng
        self.seen: set[str] = set()
        # the searched names in the order given, the order of every proposed dict
        dicts = [self.space] if isinstance(self.space, Mapping) else self.space
        self.names = list(dict.fromkeys(name for d in dicts for name in d))
        self.trials: list[Any] = []
        self.study: Any = None
        self.optuna: _OptunaSpace | None = None
        self._stack = contextlib.ExitStack()
        self._minimize = minimize

    def __enter__(self) -> _Proposer:
        ParameterSampler(self.space, n_iter=1)  # validates the space, naming bad entries
        if self.sampler == "nsga2":
            self._stack.enter_context(_quiet_optuna())
            self.optuna = _OptunaSpace(self.space)
            self.study = self.optuna.study(int(self.rng.randint(_SEED_MAX)), self.n, self._minimize)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def propose(self, generation: int) -> list[dict[str, Any]]:
        """Up to ``n`` parameter sets never fitted before (fewer once the space runs out)."""
        seed = int(self.rng.randint(_SEED_MAX))
        if generation == 0:
            drawn = list(ParameterSampler(self.space, n_iter=self.n, random_state=seed))
        elif self.optuna is None:
            drawn = self._random(seed)
        else:
            drawn = []
        if self.optuna is not None:
            return self._ask(drawn)
        if not self.names:
            return drawn  # nothing searched: members differ by their seed alone
        fresh = []
        for params in drawn:
            if _key(params) not in self.seen:
                self.seen.add(_key(params))
                fresh.append({k: params[k] for k in self.names if k in params})  # as given
        return fresh

    def _random(self, seed: int) -> list[dict[str, Any]]:
        """Fresh draws; from the grid not yet fitted when every entry is a list."""
        if _all_lists(self.space):
            rest = [p for p in ParameterGrid(self.space) if _key(p) not in self.seen]
            rng = np.random.RandomState(seed)
            return [rest[i] for i in rng.permutation(len(rest))[: self.n]]
        return list(ParameterSampler(self.space, n_iter=self.n, random_state=seed))

    def _ask(self, first: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """NSGA-II proposals (``first``: generation 0's draws, enqueued so NSGA-II sees them)."""
        assert self.optuna is not None
        from optuna.trial import TrialState

        for params in first:
            self.study.enqueue_trial(self.optuna.encode(params), skip_if_exists=False)
        self.trials = []
        out: list[dict[str, Any]] = []
        repeats = 0
        while len(out) < self.n and repeats < MAX_REPEATS * self.n:
            trial = self.study.ask(self.optuna.distributions)
            params = self.optuna.decode(trial.params)
            if _key(params) in self.seen and self.optuna.distributions:
                self.study.tell(trial, state=TrialState.FAIL)  # a repeat: not worth a fit
                repeats += 1
                continue
            self.seen.add(_key(params))
            self.trials.append(trial)
            out.append(params)
        return out

    def tell(self, scores: list[float]) -> None:
        """Report the fitted members' scores to NSGA-II (nothing to do for random draws)."""
        if self.study is None:
            return
        from optuna.trial import TrialState

        for trial, score in zip(self.trials, scores, strict=True):
            if np.isfinite(score):
                self.study.tell(trial, float(score))
            else:
                self.study.tell(trial, state=TrialState.FAIL)


class _OptunaSpace:
    """``param_distributions`` as Optuna distributions (lists by index, so any value works)."""

    def __init__(self, param_distributions: Mapping[str, Any]) -> None:
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )
        from scipy.stats import rv_discrete

        self.distributions: dict[str, Any] = {}
        self.choices: dict[str, list[Any]] = {}
        for name, spec in param_distributions.items():
            if isinstance(spec, list | tuple | np.ndarray):
                self.choices[name] = list(spec)
                self.distributions[name] = CategoricalDistribution(list(range(len(spec))))
                continue
            low, high = _finite_support(name, spec)
            if isinstance(spec.dist, rv_discrete):
                self.distributions[name] = IntDistribution(int(low), int(high))
            else:
                log = spec.dist.name in ("loguniform", "reciprocal")
                self.distributions[name] = FloatDistribution(float(low), float(high), log=log)

    def study(self, seed: int, population: int, minimize: bool) -> Any:
        import optuna
        from optuna.samplers import NSGAIISampler

        sampler = NSGAIISampler(seed=seed, population_size=max(2, population))
        return optuna.create_study(
            direction="minimize" if minimize else "maximize", sampler=sampler
        )

    def encode(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """A drawn parameter set in Optuna's terms (list entries by index)."""
        out: dict[str, Any] = {}
        for name, value in params.items():
            if name in self.choices:
                out[name] = _index(self.choices[name], value)
            else:
                is_int = type(self.distributions[name]).__name__ == "IntDistribution"
                out[name] = int(value) if is_int else float(value)
        return out

    def decode(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """An Optuna trial's parameters as the member's ``set_params`` values."""
        return {  # in the order of param_distributions, as the random draws
            name: self.choices[name][params[name]] if name in self.choices else params[name]
            for name in self.distributions
        }


def _finite_support(name: str, spec: Any) -> tuple[float, float]:
    """The finite support of a frozen scipy distribution, else ``ValueError`` naming it."""
    support = getattr(spec, "support", None)
    if support is None or not hasattr(spec, "dist"):
        raise ValueError(
            f"param_distributions[{name!r}]={spec!r}: sampler='nsga2' takes lists and frozen "
            f"scipy.stats distributions"
        )
    low, high = support()
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(
            f"param_distributions[{name!r}] has the unbounded support [{low}, {high}]; "
            f"sampler='nsga2' needs bounds (e.g. scipy.stats.uniform or loguniform)"
        )
    return float(low), float(high)


def _index(choices: list[Any], value: Any) -> int:
    """Position of ``value`` in ``choices`` (by identity first: values may not compare)."""
    for i, choice in enumerate(choices):
        if choice is value:
            return i
    for i, choice in enumerate(choices):
        with contextlib.suppress(Exception):
            if bool(choice == value):
                return i
    raise ValueError(f"{value!r} is not one of {choices!r}")


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna at WARNING while the search runs; the caller's verbosity restored after."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)
