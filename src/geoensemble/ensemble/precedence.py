"""One precedence rule for the estimator parameters of ensemble members.

- A value the user sets (``model.n_clusters=6``, ``model.estimator.n_estimators=50``,
  ``model.estimator.max_depth=null``) is used by **every** member.
- Only the parameters listed in ``model.space`` vary between members.
- Setting a parameter *and* listing it in ``model.space`` is an error naming both keys.

The model configs show this explicitly: a searched estimator parameter has the value
``searched`` under ``model.estimator`` (and its range under ``model.space``); the number of
clusters ``model.n_clusters`` is ``null`` when ``model.space`` searches it. To fix a searched
parameter, set it and remove it from the space: ``model.n_clusters=6 model.space={}`` (the
whole space) or ``'~model.space.n_clusters'`` (just that key).

The features' learned steps are not estimator parameters: ``features.steps.<step>.<param>`` is
the value every member uses unless ``model.space.<step>__<param>`` searches it.
"""

from __future__ import annotations

from typing import Any

from geoensemble.errors import ConfigError

SEARCHED = "searched"
# Estimator parameters that model.n_clusters feeds (through ${model.n_clusters}).
COUNT_KEYS = ("n_clusters", "n_components")


def _estimator_key(space_key: str) -> str | None:
    """The estimator parameter a ``model.space`` key varies (None for a step's parameter)."""
    if "__" not in space_key:
        return space_key
    step, key = space_key.split("__", 1)
    return key if step == "model" else None


def _show(value: Any) -> str:
    """A value as one would write it in a Hydra override."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_show(v) for v in value) + "]"
    return str(value)


def check_precedence(
    n_clusters: int | None, estimator: dict[str, Any], space: dict[str, Any]
) -> None:
    """Check ``model.n_clusters``, ``model.estimator`` and ``model.space`` against the rule.

    Raises
    ------
    ConfigError
        When a parameter is both set and searched, or marked ``searched`` (or, for the number
        of clusters, left null) without being in the space; the message names the keys and
        the fix.
    """
    searched = {}
    for space_key, spec in space.items():
        key = _estimator_key(space_key)
        if key is not None:
            searched[key] = (space_key, spec)
    for key, (space_key, spec) in searched.items():
        if key not in estimator or estimator[key] == SEARCHED:
            continue
        value = estimator[key]
        if value is None and key in COUNT_KEYS:
            if n_clusters is None:
                continue  # the number of clusters is not set: model.n_clusters is null
            _stale(n_clusters, key)
        if key in COUNT_KEYS and n_clusters is not None and value == n_clusters:
            set_key, unset = f"model.n_clusters={n_clusters}", "leave model.n_clusters null"
        else:
            set_key = f"model.estimator.{key}={_show(value)}"
            unset = f"set model.estimator.{key}={SEARCHED}"
        raise ConfigError(
            f"config key {set_key} is also searched by model.space.{space_key}="
            f"{_show(spec)}: a value you set is used by every member and only model.space "
            f"varies, so choose one: to use {_show(value)} for every member remove it from "
            f"the space ('~model.space.{space_key}', or model.space={{}} for the whole "
            f"space; with dvc exp run -S '~model.space'), or to search it {unset}"
        )
    for key, value in estimator.items():
        if key in searched:
            continue
        if value == SEARCHED:
            raise ConfigError(
                f"config key model.estimator.{key}={SEARCHED} but model.space does not "
                f"search {key}: give it a value for every member (model.estimator.{key}=...) "
                f"or search it (model.space.{key}=[...] or {{low: .., high: ..}})"
            )
        if value is None and key in COUNT_KEYS and n_clusters is None:
            raise ConfigError(
                f"config key model.n_clusters is null (the number of clusters is searched) "
                f"but model.space does not search {key}: set model.n_clusters (e.g. "
                f"model.n_clusters=6) or search it (e.g. model.space.{key}=[4,6,8])"
            )


def _stale(n_clusters: int, key: str) -> None:
    raise ConfigError(
        f"config key model.n_clusters={n_clusters} but model.estimator.{key} is null: in a "
        f"composed params.yaml the estimator does not follow model.n_clusters; regenerate it "
        f"(python -m geoensemble.app.params model.n_clusters={n_clusters} model.space={{}}) or "
        f"use dvc exp run -S, which recomposes conf/"
    )


def member_estimator(estimator: dict[str, Any]) -> dict[str, Any]:
    """The estimator config members are built from: the ``searched`` markers left out (each
    member's value comes from ``model.space``)."""
    return {k: v for k, v in estimator.items() if not (isinstance(v, str) and v == SEARCHED)}
