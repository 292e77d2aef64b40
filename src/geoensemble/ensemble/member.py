"""One ensemble member, as a dask worker builds, fits and scores it.

This is the worker side of :mod:`geoensemble.ensemble.search`: it imports no search library,
so that worker processes preload it (and scikit-learn) quickly while the stage sets up MLflow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geoensemble.ensemble.folds import Fold
from geoensemble.ensemble.pipeline import member_pipeline
from geoensemble.ensemble.preview import preview_rgba
from geoensemble.ensemble.scoring import common_space, score_unsupervised
from geoensemble.ensemble.supervised import score_supervised
from geoensemble.errors import ConfigError


@dataclass
class TrainingData:
    """Everything members train and score on; scattered to the workers once.

    ``y``, ``folds`` and ``classes`` are set for supervised members; ``preview_X`` and
    ``preview_mask`` (the valid pixels of a thinned grid) when previews are wanted;
    ``common`` (``X`` in the common space where clustering members are scored, see
    :mod:`geoensemble.ensemble.scoring`) by the search, once for every member.
    """

    X: np.ndarray
    y: np.ndarray | None = None
    folds: list[Fold] | None = None
    classes: np.ndarray | None = None
    preview_X: np.ndarray | None = None
    preview_mask: np.ndarray | None = None
    common: np.ndarray | None = None


@dataclass(frozen=True)
class MemberSpec:
    """What every member of an ensemble shares: how to build, fit and score it.

    ``template`` is the unfitted pipeline (learned steps, then the estimator as step
    ``model``); a member is a clone of it with its own parameters
    (:func:`~geoensemble.ensemble.pipeline.member_pipeline`). ``configured`` holds the values
    the template was given, under the names a search space uses (``n_clusters``,
    ``pca__n_components``): the search's first member starts from them. ``seeded``: each
    member gets its own ``random_state``.
    """

    template: Any
    configured: dict[str, Any] = field(default_factory=dict)
    seeded: bool = False
    impute: str | None = None
    impute_value: float = 0.0
    kind: str = "cluster"
    threads: int = 1
    partial_fit_batches: int = 0
    per_member_sample: bool = False
    member_fraction: float = 0.5

    @property
    def step_names(self) -> list[str]:
        """The learned steps before the estimator (``impute`` included when there)."""
        return [name for name, _ in self.template.steps[:-1]]

    def build(self, params: dict[str, Any], *, n_features: int) -> Any:
        """This member's unfitted pipeline (a refused parameter is a ConfigError)."""
        return member_pipeline(self.template, params, n_features=n_features)


@dataclass
class FitResult:
    """What a worker sends back for one member."""

    pipeline: Any
    scores: dict[str, float]
    seconds: float
    family: str = ""
    preview: np.ndarray | None = None
    error: str = ""  # a deterministic failure of the fit: "ValueError: ..."
    trace: str = ""  # its traceback, shown with GEOENSEMBLE_DEBUG=1
    arguments: dict[str, str] = field(default_factory=dict)  # the argument names ``error`` uses


# What the estimator's own checks raise on bad parameters or data: the same on every try
# with the same seed, so the member comes back with the error instead of raising it (dask
# would rerun a raising task Search.retries times, each time failing the same way).
DETERMINISTIC = (ValueError, TypeError, ArithmeticError)


def _failed(exc: BaseException, t0: float) -> FitResult:
    import traceback

    first = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else ""
    return FitResult(
        pipeline=None,
        scores={},
        seconds=time.perf_counter() - t0,
        error=f"{type(exc).__name__}: {first}".rstrip(": "),
        trace="".join(traceback.format_exception(exc)),
        arguments=dict(getattr(exc, "arguments", None) or {}),
    )


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
    t0 = time.perf_counter()
    try:
        return _fit_member(data, spec, params, seed, t0)
    except DETERMINISTIC as exc:
        return _failed(exc, t0)


def _fit_member(
    data: TrainingData, spec: MemberSpec, params: dict[str, Any], seed: int | None, t0: float
) -> FitResult:
    from threadpoolctl import threadpool_limits

    X = data.X
    with threadpool_limits(limits=spec.threads):
        pipe = spec.build(params, n_features=X.shape[1])
        family = ""
        if spec.kind == "cluster":
            fit_X = X[_draw(len(X), spec.member_fraction, seed)] if spec.per_member_sample else X
            _fit_unsupervised(pipe, fit_X, spec.partial_fit_batches)
            seconds = time.perf_counter() - t0
            scores = score_unsupervised(pipe, X, common_of(data, spec))
        else:
            if data.y is None or data.folds is None:
                raise ConfigError(
                    f"kind={spec.kind} needs labels: give y (the labels on the features' grid)",
                    arguments={"kind": "MemberSpec.kind", "y": "TrainingData.y"},
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
        preview = _preview(pipe, data, spec.kind)
    _drop_sample_labels(pipe)
    return FitResult(pipe, scores, seconds, family, preview)


def common_of(data: TrainingData, spec: MemberSpec) -> np.ndarray:
    """``data.X`` in the common space: ``data.common``, or computed with ``spec``'s NaN fill."""
    if data.common is not None:
        return data.common
    return common_space(data.X, impute=spec.impute, impute_value=spec.impute_value)


def _preview(pipe: Any, data: TrainingData, kind: str) -> np.ndarray | None:
    """The member's map over the preview grid, when ``data`` has one."""
    if data.preview_X is None or data.preview_mask is None:
        return None
    values = pipe.predict(data.preview_X) if len(data.preview_X) else np.zeros(0)
    return preview_rgba(np.asarray(values), data.preview_mask, kind=kind)


def _drop_sample_labels(pipe: Any) -> None:
    """Drop the training-sample labels a clusterer keeps (``labels_``, one per sample pixel).

    ``predict`` does not use them; kept, every member would carry them to the driver and
    into its logged model (4 MB per member for a 1-million-pixel sample).
    """
    est = pipe[-1]
    if hasattr(est, "predict") and "labels_" in vars(est):
        del est.labels_


def consensus_member(
    data: TrainingData, pipelines: list[Any], n_clusters: int, seed: int, threads: int
) -> FitResult:
    """Build and score the pooled-centroid member (runs on a dask worker)."""
    from threadpoolctl import threadpool_limits

    from geoensemble.ensemble.consensus import pooled_centroid_member

    t0 = time.perf_counter()
    try:
        with threadpool_limits(limits=threads):
            pipe = pooled_centroid_member(pipelines, data.X, n_clusters=n_clusters, seed=seed)
            seconds = time.perf_counter() - t0
            scores = score_unsupervised(pipe, data.X, data.common)
            scores["fit_seconds"] = seconds
            preview = _preview(pipe, data, "cluster")
    except DETERMINISTIC as exc:
        return _failed(exc, t0)
    return FitResult(pipe, scores, seconds, "kmeans", preview)
