"""Member pipelines: a clone of the ensemble's unfitted pipeline with the member's parameters.

The pipeline (its learned steps, then the estimator as step ``model``) is a live
scikit-learn object: built from the config by the application (``geoensemble.app``), or
given by a Python caller. Members are ``clone(template).set_params(...)``; they travel to
dask workers by pickle, so a class defined in a notebook works.
"""

from __future__ import annotations

import difflib
from typing import Any

from sklearn.base import clone
from sklearn.pipeline import Pipeline

from geoensemble.errors import ConfigError


def member_pipeline(
    template: Pipeline, params: dict[str, Any] | None = None, *, n_features: int | None = None
) -> Pipeline:
    """This member's unfitted pipeline: a clone of ``template`` with ``params`` set.

    Parameters
    ----------
    template
        The ensemble's unfitted ``Pipeline``; its last step is named ``model``.
    params
        Parameters of this member: plain names set the estimator's (``n_clusters``);
        ``<step>__<param>`` names a step's (``pca__n_components``, ``model__tol``).
    n_features
        Number of input features, to check component counts before fitting.

    Raises
    ------
    ConfigError
        For a parameter of a step the pipeline does not have, a value the step refuses, or
        more components than features.
    """
    pipe = clone(template)
    for key, value in (params or {}).items():
        full = key if "__" in key else f"model__{key}"
        step = full.split("__", 1)[0]
        if step not in pipe.named_steps:
            raise ConfigError(
                f"space.{key}: the member pipeline has no step {step!r} (it has "
                f"{list(pipe.named_steps)}); name one of those",
                arguments={"space": "Search.space"},
            )
        param = full.split("__", 1)[1]
        owner = pipe.named_steps[step]
        valid = owner.get_params(deep=False) if hasattr(owner, "get_params") else {}
        if "__" not in param and param not in valid:
            hint = difflib.get_close_matches(param, list(valid), n=1)
            raise ConfigError(
                f"space.{key}: {type(owner).__name__} (step {step!r}) has no parameter "
                f"{param!r}"
                + (f"; did you mean {hint[0]!r}?" if hint else "")
                + f" (its parameters: {sorted(valid)})",
                arguments={"space": "Search.space"},
            )
        try:
            pipe.set_params(**{full: value})
        except ValueError as exc:
            raise ConfigError(
                f"space.{key}={value!r}: {exc}", arguments={"space": "Search.space"}
            ) from None
    if n_features is not None:
        _check_components(pipe, params or {}, n_features)
    return pipe


def _check_components(pipe: Pipeline, params: dict[str, Any], n_features: int) -> None:
    """A step asked for more components than there are features fails at once, naming the
    argument that asked (not deep inside a worker's fit)."""
    for name, step in pipe.steps[:-1]:
        value = getattr(step, "n_components", None)
        if isinstance(value, int) and not isinstance(value, bool) and value > n_features:
            key = f"{name}__n_components"
            searched = key in params
            raise ConfigError(
                f"{f'space.{key}' if searched else f'steps.{name}.n_components'}={value} is "
                f"more than the {n_features} features: lower it",
                arguments=(
                    {"space": "Search.space"} if searched else {"steps": "ensemble_pipeline.steps"}
                ),
            )


def ensemble_pipeline(
    steps: list[tuple[str, Any]],
    estimator: Any,
    *,
    impute: str | None = None,
    impute_value: float = 0.0,
) -> Pipeline:
    """The ensemble's unfitted pipeline: optional imputer, ``steps``, then ``estimator`` as
    step ``model``.

    Parameters
    ----------
    steps
        ``(name, transformer)`` pairs, in order (live, unfitted objects).
    estimator
        The final estimator.
    impute
        ``median``, ``mean`` (statistics of the training pixels) or ``constant``: how NaN
        features are filled; ``None``: not filled.
    impute_value
        The fill of ``constant``.

    Raises
    ------
    ConfigError
        For an unknown ``impute`` or a step named ``impute`` or ``model``.
    """
    from sklearn.impute import SimpleImputer

    built: list[tuple[str, Any]] = []
    if impute:
        if impute not in {"median", "mean", "constant"}:
            raise ConfigError(
                f"impute={impute!r}: use median, mean or constant (or no imputation)",
                arguments={"impute": "ensemble_pipeline.impute"},
            )
        built.append(("impute", SimpleImputer(strategy=impute, fill_value=impute_value)))
    for name, step in steps:
        if name in {"impute", "model"}:
            raise ConfigError(
                f"steps.{name}: a step may not be named {name!r} (the member pipeline's own "
                f"step); rename it",
                arguments={"steps": "ensemble_pipeline.steps"},
            )
        built.append((name, step))
    built.append(("model", estimator))
    return Pipeline(built)
