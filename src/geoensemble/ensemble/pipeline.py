"""Member pipelines: the learned steps of the features config plus the model's estimator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline

from geoensemble.errors import ConfigError
from geoensemble.trust import check_spec


def build_pipeline(
    steps: dict[str, Any],
    estimator: dict[str, Any],
    *,
    impute: str | None = None,
    impute_value: float = 0.0,
    params: dict[str, Any] | None = None,
    n_features: int | None = None,
    trusted_modules: Sequence[str] = (),
) -> Pipeline:
    """A scikit-learn ``Pipeline``: optional imputer, the configured steps, then the model.

    Parameters
    ----------
    steps
        ``{name: {_target_: ..., **kwargs}}`` in order; a ``null`` value removes a step.
    estimator
        ``{_target_: ..., **kwargs}`` of the final estimator.
    impute
        ``median``, ``mean`` (statistics of the training pixels) or ``constant``: how NaN
        features are filled.
    impute_value
        The fill of ``constant``.
    params
        Parameters of this member: plain names override the estimator's (``n_clusters``);
        ``<step>__<param>`` names set a learned step's parameter through
        ``Pipeline.set_params`` (``pca__n_components``, ``model__tol``).
    n_features
        Number of input features, to check component counts before fitting.
    trusted_modules
        ``trust.modules``: modules beyond geoensemble's allow-list whose classes a
        ``_target_`` may name (see :mod:`geoensemble.trust`).

    Raises
    ------
    ConfigError
        If a ``_target_`` is refused by the trust policy, cannot be imported or built.
    """
    built: list[tuple[str, Any]] = []
    if impute:
        if impute not in {"median", "mean", "constant"}:
            raise ConfigError(f"features.impute={impute!r}: use median, mean, constant or null")
        built.append(("impute", SimpleImputer(strategy=impute, fill_value=impute_value)))
    for name, spec in steps.items():
        if spec is None:
            continue
        if (
            n_features is not None
            and isinstance(spec.get("n_components"), int)
            and spec["n_components"] > n_features
        ):
            raise ConfigError(
                f"features.steps.{name}.n_components={spec['n_components']} is "
                f"more than the {n_features} features: lower it"
            )
        built.append((name, _instantiate(spec, f"features.steps.{name}", trusted_modules)))
    params = params or {}
    own = {k: v for k, v in params.items() if "__" not in k}
    nested = {k: v for k, v in params.items() if "__" in k}
    built.append(("model", _instantiate(estimator, "model.estimator", trusted_modules, own)))
    pipe = Pipeline(built)
    for key, value in nested.items():
        step = key.split("__", 1)[0]
        if step not in pipe.named_steps:
            raise ConfigError(
                f"model.space.{key}: the member pipeline has no step {step!r} "
                f"(steps: {list(pipe.named_steps)}); name a step of features.steps or model"
            )
        try:
            pipe.set_params(**{key: value})
        except ValueError as exc:
            raise ConfigError(f"model.space.{key}={value!r}: {exc}") from None
        if (
            n_features is not None
            and key.endswith("__n_components")
            and isinstance(value, int)
            and value > n_features
        ):
            raise ConfigError(
                f"model.space.{key}={value} is more than the {n_features} features: lower it"
            )
    return pipe


def _instantiate(
    spec: dict[str, Any],
    key: str,
    trusted_modules: Sequence[str],
    overrides: dict[str, Any] | None = None,
) -> Any:
    # Every _target_ hydra would import, the searched values (model.space) included, passes
    # the one trust policy before anything is imported or called.
    check_spec(dict(spec), key, modules=trusted_modules, resolve_targets=True)
    for name, value in (overrides or {}).items():
        check_spec(value, f"model.space.{name}", modules=trusted_modules, resolve_targets=True)
    try:
        return instantiate(dict(spec), **(overrides or {}))
    except InstantiationException as exc:
        target = spec.get("_target_")
        if str(exc).startswith("Error locating target"):
            why = f"{key}._target_={target!r} cannot be imported"
            fix = "check the module and class name (e.g. sklearn.cluster.MiniBatchKMeans)"
        else:
            # The cause says which argument was refused, e.g. an unexpected keyword.
            cause = exc.__cause__ or exc
            why = f"{target} refused the arguments of {key}: {str(cause).splitlines()[0]}"
            fix = f"check the keys under {key} against {target}'s parameters"
            if overrides:  # the searched parameters of model.space are arguments too
                fix += f" (and under model.space: {', '.join(sorted(overrides))})"
        raise ConfigError(f"cannot build {key}: {why}; {fix}") from None
