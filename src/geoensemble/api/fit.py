"""``fit_ensemble`` and ``Ensemble``: the train stage's search, without its config file."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from geoensemble.ensemble import defaults
from geoensemble.errors import ConfigError, GridMismatchError

log = logging.getLogger("geoensemble")

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

    from geoensemble.api.estimators import Recipe
    from geoensemble.ensemble.member import MemberSpec, TrainingData
    from geoensemble.ensemble.search import Member, Search


@dataclass(frozen=True)
class _Fit:
    """What one ``fit_ensemble`` call runs: the members' recipe, the search, the sample."""

    rec: Recipe
    spec: MemberSpec
    search: Search
    sample: int
    seed: int
    nan_threshold: int = 0

    @property
    def params(self) -> dict[str, Any]:
        """The fit's settings under the names the train stage logs its settings with (its
        groups' parameters as ``<group>.<name>``), logged with the parent run so that the
        MLflow UI compares a notebook's ensembles with the stage's."""
        s = self.search
        groups: dict[str, dict[str, Any]] = {
            "model": {
                "name": self.rec.family,
                "kind": self.rec.kind,
                "estimator": self.rec.estimator,
                "space": self.rec.space,
            },
            "features": {
                "steps": self.rec.steps,
                "sample.size": self.sample,
                "nan_threshold": self.nan_threshold,
                "impute": self.spec.impute,
            },
            "ensemble": {
                "size": s.size,
                "generations": s.generations,
                "keep": s.keep,
                "metric": s.objectives[0][0],
                "direction": s.objectives[0][1],
            },
        }
        return {"seed": self.seed} | {
            _logged(group, name): v for group, kv in groups.items() for name, v in kv.items()
        }

    @property
    def space_id(self) -> str:
        """What the members' scores are computed on (see
        :func:`geoensemble.ensemble.scoring.space_id`): a notebook's ensembles compare
        with each other when model, criterion, recipe, sample and seed agree."""
        from geoensemble.ensemble.scoring import space_id

        return space_id({"origin": "api", **self.params})


def _logged(group: str, name: str) -> str:
    """The name a setting of ``group`` is logged under (see :attr:`_Fit.params`)."""
    return f"{group}.{name}"


def _at_least(name: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{name}={value!r} is not an integer: use an integer >= {lo}")
    if value < lo:
        raise ConfigError(f"{name}={value!r} is out of range: use an integer >= {lo}")
    return int(value)


def _settings(
    rec: Recipe,
    *,
    size: int,
    generations: int,
    keep: int,
    criterion: str,
    sample: int,
    seed: int,
    nan_threshold: int = 0,
    impute: str | None = None,
    impute_value: float = 0.0,
) -> _Fit:
    """The members' recipe and the search for these arguments, checked as the train stage
    checks its settings (``size`` ..., ``sample``)."""
    from geoensemble.ensemble.member import MemberSpec
    from geoensemble.ensemble.pipeline import ensemble_pipeline
    from geoensemble.ensemble.search import Search
    from geoensemble.features.nanpolicy import check_nan_policy

    if not isinstance(criterion, str) or not criterion:
        raise ConfigError(f"criterion={criterion!r} is not a score name: use e.g. 'aic'")
    size = _at_least("size", size, 1)
    generations = _at_least("generations", generations, 1)
    keep = _at_least("keep", keep, 1)
    sample = _at_least("sample", sample, 10)
    nan_threshold = _at_least("nan_threshold", nan_threshold, 0)
    check_nan_policy(nan_threshold, impute)
    if keep > size * generations:
        raise ConfigError(
            f"keep={keep} is out of range: use at most the {size * generations} members "
            f"fitted (size x generations), or raise size"
        )
    *head, (_, last) = rec.template.steps
    spec = MemberSpec(
        # the imputer, when asked for, is each member's first step (as in the train stage)
        template=ensemble_pipeline(head, last, impute=impute, impute_value=float(impute_value)),
        configured=rec.configured,
        seeded="random_state" in rec.estimator,
        impute=impute,
        impute_value=float(impute_value),
        kind=rec.kind,
    )
    direction = defaults.direction_of(criterion)
    search = Search(
        space=dict(rec.space),
        size=size,
        generations=generations,
        keep=keep,
        objectives=((criterion, direction),),
        seed=int(seed),
        retries=defaults.RETRIES,
    )
    return _Fit(rec, spec, search, sample, int(seed), nan_threshold)


def _labels(y: xr.DataArray, ds: xr.Dataset, kind: str) -> Any:
    """``y`` as the labels stage's :class:`~geoensemble.io.labels.Labels` on ``ds``'s grid."""
    from geoensemble.io.labels import NODATA, Labels

    shape = (int(ds.sizes["y"]), int(ds.sizes["x"]))
    arr = np.asarray(getattr(y, "values", y))
    if arr.shape != shape:
        raise GridMismatchError(
            f"y has shape {arr.shape} but the features' grid is {shape}: give labels on the "
            f"same grid (rasterize them onto ds, e.g. with rasterio.features.rasterize)"
        )
    if kind == "regressor":
        return Labels(np.asarray(arr, dtype=np.float32), target="value", source="y")
    if arr.dtype.kind not in "iuf":
        raise ConfigError(
            f"y holds {arr.dtype} values: a classifier's labels are integer class codes "
            f"0..254 (NaN or a negative value: unlabelled); code the class names first"
        )
    unlabelled = ~np.isfinite(arr) | (arr < 0) if arr.dtype.kind == "f" else arr < 0
    codes = np.where(unlabelled, 0, arr)
    if (codes >= NODATA).any() or (codes != np.round(codes)).any():
        raise ConfigError(
            "y holds values that are not class codes 0..254: give integer codes (NaN or a "
            "negative value where a pixel is unlabelled)"
        )
    out = np.where(unlabelled, NODATA, codes).astype(np.uint8)
    return Labels(out, target="classes", source="y")


def training_data(
    ds: xr.Dataset, y: xr.DataArray | None, fit: _Fit, *, cv: Any = None
) -> tuple[TrainingData, list[str]]:
    """The members' training data, drawn as the train stage draws it from the stores (its
    folds from ``cv`` when given)."""
    from geoensemble.ensemble.training import draw_training_data

    names = [str(v) for v in ds.data_vars]
    kind, family = fit.rec.kind, fit.rec.family
    if not names:
        raise ConfigError("ds holds no feature layer: pass the dataset featurize() returned")
    if kind == "cluster" and y is not None:
        raise ConfigError(
            f"y is given but the estimator ({family}) is a clusterer, which "
            f"learns without labels: drop y, or pass a classifier or regressor"
        )
    if kind != "cluster" and y is None:
        raise ConfigError(
            f"the estimator ({family}) is a {kind}, which needs labels: pass y, a "
            f"DataArray of {'class codes' if kind == 'classifier' else 'values'} on ds's grid"
        )
    try:
        drawn = draw_training_data(
            ds,
            names,
            _labels(y, ds, kind) if y is not None else None,
            kind=kind,
            size=fit.sample,
            seed=fit.seed,
            nan_threshold=fit.nan_threshold,
            cv=_splitter(cv),
        )
    except ConfigError as exc:
        if "spatial_folds.n_folds" not in exc.arguments.values():
            raise
        # the default folds' settings are not fit_ensemble's arguments: its fix is cv
        what = str(exc).split(": lower block_size", 1)[0]
        raise ConfigError(
            f"{what}: pass cv=SpatialBlockCV(n_splits, block_size=...) with fewer folds or "
            f"smaller blocks, or add labels",
            arguments={"cv": "fit_ensemble.cv"},
        ) from None
    return drawn.data, names


def _splitter(cv: Any) -> Any:
    """``cv`` when it is a scikit-learn splitter (or ``None``); a ConfigError otherwise."""
    if cv is not None and not (hasattr(cv, "split") and hasattr(cv, "get_n_splits")):
        raise ConfigError(
            f"cv={cv!r} is not a splitter: pass e.g. SpatialBlockCV(5, block_size=32) or "
            f"sklearn.model_selection.KFold(5), or None",
            arguments={"cv": "fit_ensemble.cv"},
        )
    return cv


@contextlib.contextmanager
def _cluster(client: Any) -> Iterator[Any]:
    """The caller's client, or an in-process one (one worker thread) for this fit."""
    if client is not None:
        if not hasattr(client, "submit") or not hasattr(client, "scatter"):
            raise ConfigError(
                f"client={client!r} is not a dask.distributed Client: pass Client(...) or None"
            )
        yield client
        return
    from geoensemble.compute import Cluster, dask_client

    # in-process (compute=threads of the stage): one worker thread
    inproc = Cluster(n_workers=1, threads_per_worker=1, processes=False, retries=defaults.RETRIES)
    with dask_client(inproc, preload=["geoensemble.ensemble.member"]) as own:
        yield own


@dataclass
class Ensemble:
    """A fitted ensemble: every member, the kept ones (best first) and their scores.

    Attributes
    ----------
    members
        Every member fitted, in fitting order; each has ``pipeline`` (the fitted scikit-learn
        ``Pipeline``), ``params`` (its searched parameters), ``scores``, ``rank`` (1 = best),
        ``generation`` and ``seed``.
    kept
        The ``keep`` best members, best first: what :func:`predict_many` and
        :meth:`predict` use.
    feature_names
        The features the members were trained on, in their order.
    metric
        The criterion the members are ranked by.
    history
        Per generation: the best score so far and the generation's own best.
    params
        The fit's settings as train-stage-like keys (what :meth:`log_to_mlflow` logs).
    space_id
        What the scores are computed on (comparable ensembles share it).
    param_names
        The searched parameters' names as given in ``space`` (``kmeans__n_clusters``) by
        their names in the members' ``params`` (``n_clusters``); :attr:`scores` uses them.
    warnings
        What the search could not settle, also logged: e.g. the best member's value at an
        edge of a searched integer range (widen ``space`` and fit again).
    """

    members: list[Member]
    kept: list[Member]
    feature_names: list[str]
    metric: str
    history: list[dict[str, float]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    space_id: str = ""
    example: np.ndarray | None = field(default=None, repr=False)
    sample_pixels: int = 0
    param_names: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def best(self) -> Member:
        """The best member (rank 1); its fitted pipeline is ``best.pipeline``."""
        return self.kept[0]

    @property
    def scores(self) -> pd.DataFrame:
        """One row per member, best rank first: generation, rank, kept, parameters, scores."""
        import pandas as pd

        kept = {m.number for m in self.kept}
        rows = []
        for m in sorted(self.members, key=lambda m: m.rank):
            row: dict[str, Any] = {
                "member": m.name,
                "generation": m.generation,
                "rank": m.rank,
                "kept": m.number in kept,
                "seed": m.seed,
            }
            row.update({self.param_names.get(k, k): v for k, v in m.params.items()})
            row[self.metric] = m.scores.get(self.metric, np.nan)
            row.update({k: v for k, v in m.scores.items() if k != self.metric})
            rows.append(row)
        return pd.DataFrame(rows).set_index("member")

    def predict(self, ds: xr.Dataset, *, client: Any = None) -> xr.DataArray:
        """The ensemble's map of ``ds``: the kept members' majority vote (the best member's
        map when one is kept), no-data where a pixel has a NaN feature.

        See :func:`predict_many` for every member's map and the agreement.
        """
        from geoensemble.api.predict import predict_many

        (out,) = predict_many(self, [ds], outputs=("vote",), client=client)
        return out["vote"]

    def log_to_mlflow(
        self,
        uri: str,
        *,
        experiment: str = "geoensemble",
        model_name: str = "geoensemble",
        alias: str = "notebook",
        timeout: float = 10.0,
    ) -> str:
        """Log the ensemble as the train stage does and register its kept members.

        One parent run (the equivalent config as its parameters), one child run per member
        (parameters, scores, rank), the kept members logged as models and registered as
        versions of ``model_name``, ``alias`` set on the best one. Every run is closed.

        Parameters
        ----------
        uri
            The MLflow tracking URI (``sqlite:///path/mlflow.db``, ``http://host:port``).
        experiment
            The MLflow experiment (created if needed).
        model_name
            The registered model the kept members become versions of.
        alias
            The alias moved to the best member's version (not ``champion`` unless you mean
            to replace the pipeline's champion).
        timeout
            Seconds every MLflow call may take.

        Returns
        -------
        str
            The parent run's id.

        Raises
        ------
        TrackingError
            When the store cannot be used, in one line naming it.
        """
        from geoensemble import tracking

        _check_log_args(uri, model_name, alias)
        family = str(self.params.get(_logged("model", "name"), ""))
        tracker = tracking.Tracker(uri, experiment=experiment, timeout=timeout)
        exp_id = tracker.open()
        tags = {**tracking.run_tags(), "geoensemble.source": "api"}
        run_name = f"ensemble-{family}"
        with tracker.parent_run(
            exp_id,
            run_name=run_name,
            params=self.params,
            tags={
                **tags,
                "model_family": family,
                "model_kind": str(self.params.get(_logged("model", "kind"), "")),
                "score_space": self.space_id,
            },
        ) as parent_id:
            versions = self._log_members(tracker, parent_id, tags, model_name, run_name)
            # the caller's own alias: an explicit act, as `geoensemble promote` is
            tracker.set_alias(model_name, alias, versions[self.kept[0].number])
            tracker.log_metrics(
                parent_id,
                {
                    f"best_{self.metric}": self.best.scores[self.metric],
                    "n_members": len(self.members),
                    "n_generations": len(self.history),
                    "sample_pixels": self.sample_pixels,
                },
            )
        return parent_id

    def _log_members(
        self, tracker: Any, parent_id: str, tags: dict[str, str], model_name: str, run_name: str
    ) -> dict[int, str]:
        """One child run per member; the kept ones logged as models and registered."""
        from geoensemble.ensemble.runlog import MemberLogger
        from geoensemble.ensemble.search import EnsembleResult

        family = str(self.params.get(_logged("model", "name"), ""))
        logger = MemberLogger(
            tracker.experiment_of(parent_id),
            parent_id,
            tracker=tracker,
            family=family,
            space_keys=list(self.params.get(_logged("model", "space")) or {}),
            tags=tags,
        )
        for m in self.members:
            logger.log_member(m)
        versions: dict[int, str] = logger.finish(
            EnsembleResult(self.members, self.kept, self.history, self.metric),
            feature_names=self.feature_names,
            example=self.example if self.example is not None else np.zeros((0, 0)),
            model_name=model_name,
            ensemble_name=f"{run_name}-{parent_id[:8]}",
            lineage={
                "origin": "api",
                "criterion": self.metric,
                "score_space": self.space_id,
                "family": family,
            },
        )
        return versions


def _edge_warnings(rec: Recipe, best: Mapping[str, Any]) -> list[str]:
    """Log and return a warning per searched integer range the best member sits at an end of."""
    from geoensemble.ensemble.space import range_edges

    out = []
    for e in range_edges(rec.space, best):
        out.append(e.message(f"space['{rec.given.get(e.name, e.name)}']"))
        log.warning("fit_ensemble: %s", out[-1])
    return out


def _check_log_args(uri: Any, model_name: Any, alias: Any) -> None:
    """One line for a tracking URI, registered model name or alias that cannot work."""
    from geoensemble.io.checks import check_name

    if not isinstance(uri, str) or not uri:
        raise ConfigError(f"uri={uri!r} is not an MLflow tracking URI: use sqlite:///... ")
    check_name("model_name", model_name)
    check_name("alias", alias)


def fit_ensemble(
    estimator: Any,
    ds: xr.Dataset,
    *,
    y: xr.DataArray | None = None,
    space: Mapping[str, Any] | None = None,
    size: int = defaults.SIZE,
    generations: int = defaults.GENERATIONS,
    keep: int = defaults.KEEP,
    criterion: str = defaults.CRITERION,
    sample: int = defaults.SAMPLE,
    seed: int = 0,
    nan_threshold: int = 0,
    impute: str | None = None,
    impute_value: float = 0.0,
    cv: Any = None,
    client: Any = None,
    tracking: str | None = None,
) -> Ensemble:
    """Fit an ensemble of ``estimator`` over generations: the train stage's search.

    Each member is a copy of ``estimator`` whose parameters listed in ``space`` are drawn
    (generation 0 at random, later generations by NSGA-II from the best so far, elm's
    evolutionary search); members are fitted as dask tasks and ranked by ``criterion``.

    Parameters
    ----------
    estimator
        An unfitted scikit-learn estimator or ``Pipeline`` (e.g. scaling, PCA, then
        ``MiniBatchKMeans``). Each member is a clone of it with its own parameters; members
        reach dask workers by pickle, so classes defined in a notebook cell work.
    ds
        Features from :func:`featurize`: a seeded sample of at most ``sample`` valid pixels
        (no NaN feature) is drawn for clusterers; labelled valid pixels for supervised ones.
    y
        Labels on ``ds``'s grid, for classifiers (integer class codes, NaN or negative =
        unlabelled) and regressors (values, NaN = unlabelled); scored by spatial block CV.
    space
        The searched parameters: ``{param: [choices]}`` or ``{param: {"low": .., "high":
        .., "step": .., "log": ..}}``; ``<step>__<param>`` for a pipeline step's
        parameter. A searched parameter must be left at its default on ``estimator``.
    size
        Members per generation (4, as the train stage).
    generations
        Generations of the search (2; it stops early after 2 without improvement).
    keep
        Members kept (3), best first, for prediction and registration.
    criterion
        The score that ranks members: ``aic`` (default), ``bic``, ``inertia`` for
        clusterers; ``log_loss``, ``kappa``, ``accuracy``... for classifiers; ``rmse``,
        ``r2``... for regressors; ``mean_agreement`` (needs no truth: a member's mean agreement
        with the other members, see :mod:`geoensemble.ensemble.agreement`) for clusterers
        and classifiers. Larger-is-better scores are maximized.
    sample
        Most training pixels.
    seed
        Seeds the sample, the search and each member (``seed + member number``).
    nan_threshold
        Pixels with more NaN features than this are left out of the sample (0: only pixels
        without a NaN feature); above 0 needs ``impute``.
    impute
        ``"median"``, ``"mean"`` or ``"constant"`` (``impute_value``): how each member's
        pipeline fills the NaN features it keeps, learned on its training pixels.
    impute_value
        The fill of ``impute="constant"``.
    cv
        The folds that score classifiers and regressors: a scikit-learn splitter such as
        :class:`~geoensemble.SpatialBlockCV` (its ``split`` gets each labelled pixel's
        ``(row, col)`` as ``groups``), or ``KFold``; ``None``: the train stage's spatial
        blocks (5 folds of 32-px blocks). Not used by clusterers.
    client
        A ``dask.distributed.Client`` whose workers fit the members; ``None``: an
        in-process cluster of one worker thread, closed afterwards.
    tracking
        An MLflow tracking URI to log the ensemble to (:meth:`Ensemble.log_to_mlflow`);
        ``None``: MLflow is not used (nor imported).

    Returns
    -------
    Ensemble

    Raises
    ------
    ConfigError, EmptyLayerError, GridMismatchError, ComputeError, TrackingError
        In one line naming the argument or parameter and how to fix it, before any fit
        where it can be known beforehand.
    """
    from geoensemble.api.estimators import recipe
    from geoensemble.compute import Cluster, wait_for_workers
    from geoensemble.ensemble.checks import check_members
    from geoensemble.ensemble.search import run_ensemble

    if not hasattr(ds, "data_vars"):
        raise ConfigError(
            f"ds is a {type(ds).__name__}: pass the xarray.Dataset that featurize() returned"
        )
    rec = recipe(estimator, space)
    fit = _settings(
        rec,
        size=size,
        generations=generations,
        keep=keep,
        criterion=criterion,
        sample=sample,
        seed=seed,
        nan_threshold=nan_threshold,
        impute=impute,
        impute_value=impute_value,
    )
    data, names = training_data(ds, y, fit, cv=cv)
    # A member that cannot be built or fitted on this sample fails here, before the
    # cluster starts (as in the train stage).
    check_members(fit.spec, fit.search.space, fit.search.size, data, source="ds")
    with _cluster(client) as c:
        wait_for_workers(c, Cluster.timeout)
        result = run_ensemble(data, fit.spec, fit.search, c)
    ens = Ensemble(
        members=result.members,
        kept=result.kept,
        feature_names=names,
        metric=result.metric,
        history=result.history,
        params=fit.params,
        space_id=fit.space_id,
        example=data.X[:5],
        sample_pixels=len(data.X),
        param_names=dict(fit.rec.given),
        warnings=_edge_warnings(fit.rec, result.kept[0].params),
    )
    if tracking is not None:
        ens.log_to_mlflow(tracking)
    return ens
