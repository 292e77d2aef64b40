"""The parameter space an ensemble searches, as Optuna distributions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from geoensemble.errors import ConfigError


def distributions(space: dict[str, Any]) -> dict[str, BaseDistribution]:
    """``{param: [choices]}`` or ``{param: {low, high, step?, log?}}`` to distributions."""
    out: dict[str, BaseDistribution] = {}
    arguments = {"space": "Search.space"}
    for name, spec in space.items():
        key = f"space.{name}"
        if isinstance(spec, list | tuple):
            if not spec:
                raise ConfigError(
                    f"{key} is an empty list: give at least one choice", arguments=arguments
                )
            out[name] = CategoricalDistribution(list(spec))
        elif isinstance(spec, dict) and {"low", "high"} <= set(spec):
            low, high = spec["low"], spec["high"]
            if low > high:
                raise ConfigError(f"{key}: low={low} is above high={high}", arguments=arguments)
            if isinstance(low, int) and isinstance(high, int) and not spec.get("float"):
                out[name] = IntDistribution(
                    low, high, step=int(spec.get("step", 1)), log=bool(spec.get("log", False))
                )
            else:
                out[name] = FloatDistribution(
                    float(low), float(high), step=spec.get("step"), log=bool(spec.get("log", False))
                )
        else:
            raise ConfigError(
                f"{key}={spec!r}: use a list of choices or "
                f"{{low: .., high: .., step: .., log: ..}}",
                arguments=arguments,
            )
    return out


def space_size(dists: dict[str, BaseDistribution]) -> int | None:
    """How many distinct members ``dists`` allows (``None``: unbounded, a continuous range).

    An empty space is unbounded too: its members share the model's parameters and differ by
    their seed.
    """
    if not dists:
        return None
    total = 1
    for dist in dists.values():
        if isinstance(dist, CategoricalDistribution):
            n = len(set(dist.choices))  # as the search tells members apart
        elif isinstance(dist, IntDistribution):
            n = (dist.high - dist.low) // dist.step + 1
        elif isinstance(dist, FloatDistribution) and dist.step is not None:
            n = round((dist.high - dist.low) / dist.step) + 1
        elif isinstance(dist, FloatDistribution) and dist.low == dist.high:
            n = 1
        else:
            return None
        total *= n
    return total


def check_space_size(space: dict[str, Any], size: int) -> int | None:
    """The number of distinct members ``space`` allows, after checking that it is at least
    ``size`` (else the search could not fill one generation).

    Raises
    ------
    ConfigError
        Naming ``size`` and the number of members ``space`` allows.
    """
    n = space_size(distributions(space))
    if n is not None and size > n:
        keys = ", ".join(f"space.{k}" for k in space) or "space (empty)"
        raise ConfigError(
            f"size={size} members per generation, but space allows only {n} distinct "
            f"member(s) ({keys}): lower size to at most {n}, or widen space",
            arguments={"size": "Search.size", "space": "Search.space"},
        )
    return n


def defaults_in_space(
    configured: dict[str, Any], dists: dict[str, BaseDistribution]
) -> dict[str, Any]:
    """The configured values of the searched parameters, where the space admits them.

    ``configured`` holds values under the space's names (``n_clusters``,
    ``pca__n_components``, ``model__tol``); see ``MemberSpec.configured``.
    """
    out = {}
    for name, dist in dists.items():
        value = configured.get(name)
        if value is not None and _admits(dist, value):
            out[name] = value
    return out


def _admits(dist: BaseDistribution, value: Any) -> bool:
    """Whether ``value`` is one ``dist`` can propose (through public attributes only)."""
    if isinstance(dist, CategoricalDistribution):
        return any(type(c) is type(value) and c == value for c in dist.choices)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(dist, IntDistribution) and not float(value).is_integer():
        return False
    low, high = getattr(dist, "low", None), getattr(dist, "high", None)
    if low is None or high is None or not low <= value <= high:
        return False
    step = getattr(dist, "step", None)
    return not step or abs((value - low) / step - round((value - low) / step)) < 1e-9


def configured_values(steps: Mapping[str, Any], estimator: Mapping[str, Any]) -> dict[str, Any]:
    """The values ``steps`` and ``estimator`` set, under the names a searched space uses: the
    estimator's as plain names, a step's as ``<step>__<param>`` (the search starts from
    them)."""
    out = {k: v for k, v in estimator.items() if k != "_target_"}
    out.update({f"model__{k}": v for k, v in list(out.items())})
    for name, spec in steps.items():
        for k, v in (spec or {}).items():
            if k != "_target_":
                out[f"{name}__{k}"] = v
    return out


@dataclass(frozen=True)
class RangeEdge:
    """A searched integer parameter whose chosen value is an end of its searched range."""

    name: str  # as the space names it
    value: int
    low: int
    high: int

    @property
    def edge(self) -> str:
        """``"top"`` or ``"bottom"``."""
        return "top" if self.value == self.high else "bottom"

    @property
    def wider(self) -> dict[str, int]:
        """A range reaching past this edge (half as wide again, at least 2 further)."""
        reach = max(2, (self.high - self.low) // 2)
        if self.edge == "top":
            return {"low": self.low, "high": self.high + reach}
        return {"low": max(1, self.low - reach), "high": self.high}

    def message(self, where: str) -> str:
        """One line for the log, the run and the evaluation; ``where`` names the space's
        entry as the user gave it (``space['n_clusters']``, or the stage's config key)."""
        w = self.wider
        return (
            f"the chosen member's {self.name}={self.value} is the {self.edge} of the searched "
            f"range {self.low}..{self.high}: a better value may lie beyond it; widen {where} "
            f"(e.g. {{low: {w['low']}, high: {w['high']}}}) and train again"
        )


def range_edges(space: Mapping[str, Any], params: Mapping[str, Any]) -> list[RangeEdge]:
    """The searched integer parameters of ``space`` whose value in ``params`` (the chosen
    member's) sits at an end of the searched range: ``{low, high}`` integer ranges and lists
    of at least three integers. A range of one value has no edge to leave."""
    out = []
    for name, spec in space.items():
        value = params.get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            continue
        if isinstance(spec, Mapping) and {"low", "high"} <= set(spec):
            low, high = spec["low"], spec["high"]
            if not (isinstance(low, int) and isinstance(high, int)) or spec.get("float"):
                continue
        elif isinstance(spec, list | tuple) and len(set(spec)) >= 3:
            if not all(isinstance(c, int) and not isinstance(c, bool) for c in spec):
                continue
            low, high = min(spec), max(spec)
        else:
            continue
        if low < high and value in (low, high):
            out.append(RangeEdge(str(name), int(value), int(low), int(high)))
    return out
