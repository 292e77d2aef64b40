"""Live estimators from the config: the one place ``_target_`` specs become objects.

``features.steps`` and ``model.estimator`` name classes; each ``_target_`` (nested ones and
searched values too) passes :mod:`geoensemble.trust` before Hydra imports and calls it. The
library then gets the unfitted pipeline, as a notebook would pass it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from sklearn.pipeline import Pipeline

from geoensemble.app.keys import with_config_keys
from geoensemble.ensemble.pipeline import ensemble_pipeline
from geoensemble.errors import ConfigError
from geoensemble.trust import check_spec


def build(
    spec: Mapping[str, Any], key: str, trusted_modules: Sequence[str], searched: Sequence[str] = ()
) -> Any:
    """The object of one ``{_target_: ..., **kwargs}`` config node ``key``.

    Raises
    ------
    ConfigError
        If a ``_target_`` is refused by the trust policy, cannot be imported or refuses its
        arguments (naming ``key`` and, when given, the ``searched`` keys of ``model.space``).
    """
    # Every _target_ hydra would import passes the one trust policy before anything runs.
    check_spec(dict(spec), key, modules=trusted_modules, resolve_targets=True)
    try:
        return instantiate(dict(spec))
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
            if searched:  # the searched parameters of model.space are arguments too
                fix += f" (and under model.space: {', '.join(sorted(searched))})"
        raise ConfigError(f"cannot build {key}: {why}; {fix}") from None


@with_config_keys
def pipeline_template(
    steps: Mapping[str, Any],
    estimator: Mapping[str, Any],
    *,
    impute: str | None,
    impute_value: float,
    trusted_modules: Sequence[str],
    space: Mapping[str, Any],
) -> Pipeline:
    """The ensemble's unfitted pipeline from ``features.steps`` (a ``null`` step is left
    out) and ``model.estimator`` (its ``searched`` markers already left out)."""
    for name, values in space.items():  # searched values may name code too
        check_spec(values, f"model.space.{name}", modules=trusted_modules, resolve_targets=True)
    built = [
        (name, build(spec, f"features.steps.{name}", trusted_modules))
        for name, spec in steps.items()
        if spec is not None
    ]
    own = [k for k in space if "__" not in k]
    model = build(estimator, "model.estimator", trusted_modules, own)
    return ensemble_pipeline(built, model, impute=impute, impute_value=impute_value)


def build_pipeline(
    steps: Mapping[str, Any],
    estimator: Mapping[str, Any],
    *,
    impute: str | None = None,
    impute_value: float = 0.0,
    params: Mapping[str, Any] | None = None,
    n_features: int | None = None,
    trusted_modules: Sequence[str] = (),
) -> Pipeline:
    """One member's unfitted pipeline from config specs: :func:`pipeline_template`, then
    :func:`~geoensemble.ensemble.pipeline.member_pipeline` with ``params``."""
    from geoensemble.ensemble.pipeline import member_pipeline

    template = pipeline_template(
        steps,
        estimator,
        impute=impute,
        impute_value=impute_value,
        trusted_modules=trusted_modules,
        space=dict(params or {}),
    )
    return member_pipeline(template, dict(params or {}), n_features=n_features)
