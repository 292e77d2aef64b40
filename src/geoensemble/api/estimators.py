"""A scikit-learn estimator or ``Pipeline`` as the members' recipe.

The caller's live objects are the members' template: each member is a clone of them with its
own parameters (:func:`geoensemble.ensemble.pipeline.member_pipeline`), exactly as the train
stage builds members from the pipeline it instantiated from its config. Classes defined in a
notebook work (members travel to dask workers by pickle). The ``{_target_: ..., **params}``
descriptions kept beside the template only record what was fitted (logged as parameters).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geoensemble.errors import ConfigError

# Parameters always kept in a spec, even at their default: a seeded estimator is what makes
# the search give each member its own seed (as the stage's ``random_state: ${seed}``).
ALWAYS = ("random_state",)


@dataclass
class Recipe:
    """The member recipe of one estimator: steps, the final estimator, and its search space.

    Attributes
    ----------
    steps
        ``features.steps``: ``{name: spec}`` of the learned steps before the estimator.
    estimator
        ``model.estimator``: the final estimator's spec, searched parameters left out.
    space
        ``model.space``, with the final step's ``<name>__<param>`` keys as plain names.
    kind
        ``cluster``, ``classifier`` or ``regressor``.
    family
        The final estimator's class name (``MiniBatchKMeans``), the ``model.name``.
    template
        The unfitted pipeline members are cloned from (steps, then ``model``).
    configured
        The values set on the caller's objects, under the space's names.
    given
        The space's names as the caller gave them (``kmeans__n_clusters``), by their names
        in ``space`` (``n_clusters``).
    """

    steps: dict[str, Any]
    estimator: dict[str, Any]
    space: dict[str, Any]
    kind: str
    family: str
    template: Any = None
    configured: dict[str, Any] = field(default_factory=dict)
    given: dict[str, str] = field(default_factory=dict)


def _is_default(value: Any, default: Any) -> bool:
    if default is inspect.Parameter.empty:
        return False
    if value is default:
        return True
    try:
        same = value == default
        return bool(same) if isinstance(same, bool | np.bool_) else False
    except (TypeError, ValueError):
        return False


def _defaults(cls: type) -> dict[str, Any]:
    try:
        sig = inspect.signature(cls.__init__)  # type: ignore[misc]
    except (TypeError, ValueError):
        return {}
    return {n: p.default for n, p in sig.parameters.items() if n != "self"}


def _name(obj: Any) -> str:
    """``module.qualname`` of a class or function, for the record (``__main__.LogT`` too)."""
    return f"{getattr(obj, '__module__', '') or '?'}.{getattr(obj, '__qualname__', repr(obj))}"


def _value(value: Any, where: str) -> Any:
    """A parameter value as a config-like node: plain data, a nested spec, or a reference."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, int | float):
        return value
    if isinstance(value, list | tuple):
        return [_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {str(k): _value(v, f"{where}.{k}") for k, v in value.items()}
    if hasattr(value, "get_params") and not isinstance(value, type):
        return estimator_spec(value, where)
    if callable(value):
        return {"_target_": "hydra.utils.get_method", "path": _name(value)}
    return repr(value)


def estimator_spec(est: Any, where: str) -> dict[str, Any]:
    """``{_target_: module.Class, **params}``: the parameters that differ from the class's
    defaults (plus ``random_state``), nested estimators as nested specs (a record only)."""
    cls = type(est)
    defaults = _defaults(cls)
    spec: dict[str, Any] = {"_target_": _name(cls)}
    for name, value in est.get_params(deep=False).items():
        if name in ALWAYS or not _is_default(value, defaults.get(name, inspect.Parameter.empty)):
            spec[name] = _value(value, f"{where}.{name}")
    return spec


def _space_names(
    space: Mapping[str, Any], last_name: str, steps: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """``space`` with the final step's ``<name>__<param>`` keys as plain names, and the
    names as given by their plain names."""
    out: dict[str, Any] = {}
    given: dict[str, str] = {}
    for key, dist in space.items():
        step, _, param = str(key).rpartition("__")
        if step in (last_name, "model"):
            given[param] = str(key)
            key = param
        elif step and step not in steps:
            raise ConfigError(
                f"space['{key}']: the pipeline has no step {step!r} (steps: "
                f"{[*steps, last_name]}); name a step, or the estimator's own parameter"
            )
        out[str(key)] = dist
    return out, given


def _unset_searched(spec: dict[str, Any], space: Mapping[str, Any], last: Any) -> None:
    """Drop from ``spec`` the searched seeds and counts left at their defaults; refuse a
    value the caller set on the estimator and also searches (every member would use it)."""
    defaults = _defaults(type(last))
    for key in space:
        if "__" in key or key not in spec:
            continue
        if key in ALWAYS and _is_default(last.get_params(deep=False).get(key), defaults.get(key)):
            spec.pop(key)
            continue
        raise ConfigError(
            f"the estimator's {key}={spec[key]!r} is also searched by space['{key}']: a value "
            f"you set is used by every member and only space varies, so leave {key} at its "
            f"default on the estimator to search it, or remove it from space"
        )


def recipe(estimator: Any, space: Mapping[str, Any] | None) -> Recipe:
    """The member recipe of ``estimator`` (a scikit-learn estimator or ``Pipeline``).

    The precedence rule of :mod:`geoensemble.ensemble.precedence`, for objects: a parameter
    searched in ``space`` must be left at its default on the estimator (its value comes from
    the space, for every member); a value the caller set and also searches is refused.

    Raises
    ------
    ConfigError
        For an object that is not an estimator, or a parameter both set and searched.
    """
    from geoensemble.predict.models import model_kind

    if not hasattr(estimator, "get_params") or not hasattr(estimator, "fit"):
        raise ConfigError(
            f"estimator={estimator!r} is not a scikit-learn estimator: pass an unfitted "
            f"estimator or Pipeline, e.g. MiniBatchKMeans() or make_pipeline(...)"
        )
    if isinstance(estimator, type):
        raise ConfigError(
            f"estimator={estimator.__name__} is a class: pass an instance, "
            f"e.g. {estimator.__name__}()"
        )
    named = list(getattr(estimator, "steps", [("model", estimator)]))
    if not named or any(s is None or s == "passthrough" for _, s in named):
        raise ConfigError(
            "the estimator Pipeline has an empty or 'passthrough' step: remove it from the Pipeline"
        )
    *head, (last_name, last) = named
    steps = {str(n): estimator_spec(s, f"the pipeline step {n}") for n, s in head if n}
    if "model" in steps:
        raise ConfigError(
            "the estimator Pipeline has a step named 'model' before its last step: rename it "
            "(the final estimator is the member's 'model' step)"
        )
    spec = estimator_spec(last, "the estimator")
    space_out, given = _space_names(space or {}, str(last_name), steps)
    _unset_searched(spec, space_out, last)
    from sklearn.base import clone
    from sklearn.pipeline import Pipeline

    template = Pipeline([*((str(n), clone(s)) for n, s in head), ("model", clone(last))])
    from geoensemble.ensemble.space import configured_values

    configured = configured_values(steps, {k: v for k, v in spec.items() if k not in ALWAYS})
    return Recipe(
        steps=steps,
        estimator=spec,
        space=space_out,
        kind=model_kind(estimator),
        family=type(last).__name__,
        template=template,
        configured={k: v for k, v in configured.items() if k in space_out},
        given=given,
    )
