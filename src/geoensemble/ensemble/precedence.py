"""One precedence rule for the estimator parameters of ensemble members.

:func:`check_precedence` takes the estimator's parameters (``estimator``), the number of
clusters (``n_clusters``) and the searched ``space``:

- A value that is set (``n_clusters=6``, ``estimator["n_estimators"]=50``,
  ``estimator["max_depth"]=None``) is used by **every** member.
- Only the parameters listed in ``space`` vary between members.
- Setting a parameter *and* listing it in ``space`` is an error naming both arguments.

A searched estimator parameter has the value ``searched`` in ``estimator`` (and its range in
``space``); ``n_clusters`` is ``None`` when ``space`` searches the number of clusters. To fix a
searched parameter, set it and remove it from ``space``.

The learned steps' parameters are not estimator parameters: a step's value is the one every
member uses unless ``space`` searches it as ``<step>__<param>``.
"""

from __future__ import annotations

from typing import Any

from geoensemble.errors import ConfigError

SEARCHED = "searched"
# The argument each name of this rule's messages stands for (see geoensemble.errors).
ARGUMENTS = {
    "n_clusters": "check_precedence.n_clusters",
    "estimator": "check_precedence.estimator",
    "space": "check_precedence.space",
}
# Estimator parameters that n_clusters feeds (the stage's config interpolates it).
COUNT_KEYS = ("n_clusters", "n_components")


def _estimator_key(space_key: str) -> str | None:
    """The estimator parameter a key of ``space`` varies (None for a step's parameter)."""
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
    """Check ``n_clusters``, ``estimator`` and ``space`` against the rule.

    Raises
    ------
    ConfigError
        When a parameter is both set and searched, or marked ``searched`` (or, for the number
        of clusters, left null) without being in the space; the message names the arguments
        and the fix.
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
                continue  # the number of clusters is not set: n_clusters is null
            _stale(n_clusters, key)
        if key in COUNT_KEYS and n_clusters is not None and value == n_clusters:
            set_key, unset = f"n_clusters={n_clusters}", "leave n_clusters null"
        else:
            set_key = f"estimator.{key}={_show(value)}"
            unset = f"set estimator.{key}={SEARCHED}"
        raise ConfigError(
            f"{set_key} is also searched by space.{space_key}={_show(spec)}: a value you set "
            f"is used by every member and only space varies, so choose one: to use "
            f"{_show(value)} for every member remove it from space ('~space.{space_key}', or "
            f"space={{}} to search nothing; with dvc exp run -S '~space'), or to search it "
            f"{unset}",
            arguments=ARGUMENTS,
        )
    for key, value in estimator.items():
        if key in searched:
            continue
        if value == SEARCHED:
            raise ConfigError(
                f"estimator.{key}={SEARCHED} but space does not search estimator.{key}: give "
                f"it a value for every member (estimator.{key}=...) or search it "
                f"(space.{key}=[...] or {{low: .., high: ..}})",
                arguments=ARGUMENTS,
            )
        if value is None and key in COUNT_KEYS and n_clusters is None:
            raise ConfigError(
                f"n_clusters is null (the number of clusters is searched) but space does not "
                f"search estimator.{key}: set n_clusters (e.g. n_clusters=6) or search it "
                f"(e.g. space.{key}=[4,6,8])",
                arguments=ARGUMENTS,
            )


def _stale(n_clusters: int, key: str) -> None:
    raise ConfigError(
        f"n_clusters={n_clusters} but estimator.{key} is null: a composed params.yaml does "
        f"not update estimator.{key} from n_clusters; regenerate it (python -m "
        f"geoensemble.app.params n_clusters={n_clusters} space={{}}) or use dvc exp run -S, "
        f"which recomposes conf/",
        arguments=ARGUMENTS,
    )


def member_estimator(estimator: dict[str, Any]) -> dict[str, Any]:
    """The estimator parameters members are built from: the ``searched`` markers left out
    (each member's value comes from ``space``)."""
    return {k: v for k, v in estimator.items() if not (isinstance(v, str) and v == SEARCHED)}
