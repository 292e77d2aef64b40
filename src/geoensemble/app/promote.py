"""The promote stage: ``geoensemble promote`` moves ``@champion`` deliberately.

``geoensemble promote version=N`` points ``predict.alias`` (default ``champion``) at one
registered version; ``geoensemble promote rule=best ensemble=...`` at the best comparable
candidate of one ensemble, experiment or sweep. Either records why on the version (tags
``promoted_by``, ``promoted_at``, ``promotion_reason``, ``previous_champion``). Which training
moves the alias by itself, and what a candidate carries, is told in
:mod:`geoensemble.app.candidates`; a degenerate candidate is never promoted
(:func:`geoensemble.tracking.promotion.degenerate`).
"""

from __future__ import annotations

from typing import Any

from geoensemble.app.config import AppConfig
from geoensemble.ensemble.agreement import NAME as AGREEMENT
from geoensemble.ensemble.agreement import RELATIVE
from geoensemble.errors import ConfigError, ModelNotFoundError, PromotionError
from geoensemble.tracking import Tracker
from geoensemble.tracking.promotion import degenerate, move_alias


# --------------------------------------------------------------------------- the promote stage
def _check(cfg: AppConfig) -> None:
    p = cfg.promote
    if (p.version is None) == (p.rule is None):
        raise ConfigError(
            "geoensemble promote needs exactly one of promote.version and promote.rule: "
            "e.g. geoensemble promote version=3, or geoensemble promote rule=best "
            "ensemble=latest"
        )
    if p.version is not None and p.version < 1:
        raise ConfigError(f"config key promote.version={p.version} is not a version: use N >= 1")
    if p.rule is not None and not p.ensemble:
        raise ConfigError(
            "promote.rule=best compares the candidates of one ensemble or experiment: set "
            "promote.ensemble to a parent run id, latest, or a key:value version tag (e.g. "
            "ensemble=dvc_exp_name:<name> or ensemble=sweep_id:<id>)"
        )
    if p.version is not None and p.ensemble:
        raise ConfigError(
            f"promote.ensemble={p.ensemble!r} chooses among candidates with promote.rule=best "
            f"only: drop it, or use rule=best instead of version={p.version}"
        )


def candidates(tracker: Tracker, name: str, spec: str) -> list[Any]:
    """The registered versions of one ensemble (``spec``: a parent run id or ``latest``) or
    of one experiment or sweep (``key:value``, also ``key=value``: a version tag)."""
    versions = tracker.model_versions(name)
    sep = ":" if ":" in spec else "=" if "=" in spec else None
    if sep is not None:
        key, value = (s.strip() for s in spec.split(sep, 1))
        found = [v for v in versions if v.tags.get(key) == value]
    else:
        run = spec
        if spec == "latest":
            runs = [v.tags["ensemble_run_id"] for v in versions if v.tags.get("ensemble_run_id")]
            run = runs[-1] if runs else ""
        found = [v for v in versions if v.tags.get("ensemble_run_id") == run]
    if not found:
        raise ModelNotFoundError(
            f"promote.ensemble={spec!r}: no registered version of model '{name}' belongs to "
            f"it: give a parent run id (reports/train.json parent_run_id), latest, or a "
            f"version tag as key:value (dvc_exp_name:<name>, sweep_id:<id>)"
        )
    return found


def best_candidate(name: str, spec: str, found: list[Any]) -> tuple[Any, str]:
    """The best comparable, non-degenerate candidate and the reason it was chosen.

    Raises
    ------
    PromotionError
        If the candidates differ in criterion, direction or scoring space, or all are
        degenerate.
    """
    groups = {
        (v.tags.get("criterion"), v.tags.get("direction"), v.tags.get("score_space")) for v in found
    }
    if len(groups) > 1 or None in next(iter(groups)):
        seen = ", ".join(
            f"{c or '?'} ({d or '?'}) on scoring space {s or '?'}"
            for c, d, s in sorted(groups, key=str)
        )
        raise PromotionError(
            f"the {len(found)} candidates of promote.ensemble={spec!r} are not comparable: "
            f"they rank by {seen} (or lack those tags): narrow promote.ensemble to one "
            f"ensemble (its parent run id), or promote one version by number (version=N)"
        )
    crit, direction, _ = next(iter(groups))
    if crit == AGREEMENT and len({v.tags.get("ensemble_run_id") for v in found}) > 1:
        raise PromotionError(
            f"the candidates of promote.ensemble={spec!r} come from several ensembles and "
            f"rank by {AGREEMENT}, which {RELATIVE}: narrow promote.ensemble to one ensemble "
            f"(its parent run id), or promote one version by number (version=N)"
        )
    usable = [v for v in found if degenerate(v.tags) is None]
    if not usable:
        v = found[0]
        raise PromotionError(
            f"no candidate of promote.ensemble={spec!r} can be promoted: every one is "
            f"degenerate (version {v.version}: {degenerate(v.tags)}): retrain (fix the labels "
            f"or the model's number of classes)"
        )
    sign = 1.0 if direction == "minimize" else -1.0
    best = min(usable, key=lambda v: (sign * float(v.tags["criterion_value"]), int(v.version)))
    skipped = len(found) - len(usable)
    reason = (
        f"best {crit} ({direction}) = {best.tags['criterion_value']} among {len(usable)} "
        f"candidate(s) of {spec}" + (f", {skipped} degenerate skipped" if skipped else "")
    )
    return best, reason


def promote(cfg: AppConfig) -> dict[str, Any]:
    """Move ``predict.alias`` to ``promote.version``, or to the best candidate by
    ``promote.rule``, record why on the version, and print one line saying what moved.

    Raises
    ------
    ConfigError
        If neither or both of ``promote.version`` and ``promote.rule`` are set.
    ModelNotFoundError
        If the version, or the candidates of ``promote.ensemble``, do not exist.
    PromotionError
        If the version is degenerate or the candidates are not comparable.
    """
    from geoensemble.app.tracker import tracker_for

    _check(cfg)
    p = cfg.promote
    name, alias = cfg.tracking.model_name, cfg.predict.alias
    tracker = tracker_for(cfg.tracking)
    tracker.open()
    if p.version is not None:
        chosen = tracker.model_version(name, str(p.version))
        why = degenerate(chosen.tags)
        if why is not None:
            raise PromotionError(
                f"version {chosen.version} of model '{name}' is not promoted to @{alias}: "
                f"{why}: promote another version (geoensemble promote version=N), or retrain"
            )
        by = f"promote version={p.version}"
        reason = p.reason or f"chosen by version ({by})"
    else:
        assert p.ensemble is not None
        chosen, reason = best_candidate(name, p.ensemble, candidates(tracker, name, p.ensemble))
        by = f"promote rule=best ensemble={p.ensemble}"
        reason = f"{p.reason}; {reason}" if p.reason else reason
    previous = tracker.alias_version(name, alias)
    if previous == chosen.version:
        line = f"@{alias} of model '{name}' already is version {chosen.version}: nothing moved"
    else:
        move_alias(tracker, name, alias, chosen.version, by=by, reason=reason, previous=previous)
        line = (
            f"@{alias} of model '{name}' moved from version {previous or 'none'} to "
            f"{chosen.version} ({reason})"
        )
    print(f"geoensemble promote: {line}", flush=True)
    return {
        "model_name": name,
        "alias": alias,
        "version": chosen.version,
        "previous": previous,
        "moved": previous != chosen.version,
        "reason": reason,
    }
