"""Checks of an ensemble's config against its training data, run before any work starts.

Every member the search may propose is built (not fitted) from the model's own parameters and
from each value at the edges of the searched ``space``; each step's parameters go through
scikit-learn's own validation, and the counts a fit needs (``n_clusters``, ``n_components``)
are compared with the pixels it will fit on. Settings that cannot work then fail with one
line naming the argument (``space.n_clusters``, ``estimator.tol``, ``steps.pca.n_components``),
before the MLflow run and the dask cluster start.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution

from geoensemble.ensemble.member import MemberSpec, TrainingData
from geoensemble.ensemble.space import check_space_size, distributions
from geoensemble.errors import ConfigError

# Parameters that count things fitted from the samples: a fit needs at least that many.
_COUNTS = ("n_clusters", "n_components")
# Categorical choices beyond this many are sampled at both ends only (the build is cheap, but
# a space may list hundreds of values).
_MAX_CHOICES = 50


def _edges(dist: BaseDistribution) -> list[Any]:
    """The values of ``dist`` worth building: every choice (or the ends), else low and high."""
    if isinstance(dist, CategoricalDistribution):
        choices = list(dist.choices)
        return choices if len(choices) <= _MAX_CHOICES else [choices[0], choices[-1]]
    low, high = getattr(dist, "low", None), getattr(dist, "high", None)
    return [v for v in dict.fromkeys([low, high]) if v is not None]


def candidate_params(space: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A member with every searched key at its first edge, then each key at each of its edges.

    A searched parameter has no value of its own (the precedence rule), so every candidate
    gives each key of ``space`` a value.
    """
    dists = distributions(space)
    base = {name: _edges(dist)[0] for name, dist in dists.items()}
    yield base
    for name, dist in dists.items():
        for value in _edges(dist):
            yield {**base, name: value}


# the argument each name of a member's parameter stands for (see geoensemble.errors)
ARGUMENTS = {
    "space": "Search.space",
    "estimator": "fit_ensemble.estimator",
    "steps": "ensemble_pipeline.steps",
    "impute": "ensemble_pipeline.impute",
}


def _key_of(
    step: str, param: str, params: dict[str, Any], spec: MemberSpec
) -> tuple[str, dict[str, str]]:
    """The argument a pipeline parameter comes from (``space.n_clusters``,
    ``estimator.tol``, ``steps.pca.n_components``, ``impute``), with its ``arguments``."""
    if step == "model":
        name = next((f"space.{k}" for k in (param, f"model__{param}") if k in params), None)
        name = name or f"estimator.{param}"
    elif f"{step}__{param}" in params:
        name = f"space.{step}__{param}"
    elif step in spec.step_names and step != "impute":
        name = f"steps.{step}.{param}"
    else:
        name = step
    head = name.split(".", 1)[0]
    return name, {head: ARGUMENTS[head]} if head in ARGUMENTS else {}


def _fit_rows(data: TrainingData, spec: MemberSpec) -> int:
    """The fewest rows a member fits on: the sample, a member's draw of it, or a CV fold."""
    n = len(data.X)
    if spec.per_member_sample:
        n = min(n, max(2, round(n * spec.member_fraction)))
    if data.folds:
        n = min([n, *(len(f.train) for f in data.folds)])
    return n


def check_members(
    spec: MemberSpec,
    space: dict[str, Any],
    size: int,
    data: TrainingData,
    *,
    source: str = "the training data",
) -> None:
    """Refuse, before any fit, a config whose members cannot be built or fitted on ``data``.

    ``source`` names where ``data`` comes from in the message (e.g. the features store).

    Raises
    ------
    ConfigError
        Naming the argument and value (``space.n_clusters=12``, ``steps.pca.n_components``,
        ``estimator.tol``) and how to fix it: an argument the estimator's own validation
        refuses, a count above the pixels a member fits on, or a ``size`` above the members
        ``space`` allows.
    """
    check_space_size(space, size)
    n_features = data.X.shape[1]
    rows = _fit_rows(data, spec)
    for params in candidate_params(space):
        pipe = spec.build(params, n_features=n_features)
        for step, est in pipe.steps:
            _validate(est, step, params, spec)
            for param in _COUNTS:
                value = est.get_params(deep=False).get(param)
                if isinstance(value, int) and not isinstance(value, bool) and value > rows:
                    key, arguments = _key_of(step, param, params, spec)
                    raise ConfigError(
                        f"{key}={value} needs at least {value} pixels to fit, but a member "
                        f"fits on {rows} (the valid pixels sampled from {source}): lower "
                        f"{key}, or use a larger scene with fewer no-data pixels",
                        arguments=arguments,
                    )


def _validate(est: Any, step: str, params: dict[str, Any], spec: MemberSpec) -> None:
    """scikit-learn's own parameter validation of one step, as a ConfigError."""
    check = getattr(est, "_validate_params", None)  # scikit-learn >= 1.2
    if check is None or not hasattr(est, "_parameter_constraints"):
        return  # a third-party estimator: it checks its parameters in fit
    try:
        check()
    except (ValueError, TypeError) as exc:
        # "The 'n_clusters' parameter of MiniBatchKMeans must be an int in the range
        # [1, inf). Got 0 instead."
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        name = text.split("'")[1] if text.count("'") >= 2 else ""
        where, arguments = _key_of(step, name, params, spec) if name else (f"the {step} step", {})
        raise ConfigError(
            f"{where}: {text.rstrip('.')}: fix {where}", arguments=arguments
        ) from None
