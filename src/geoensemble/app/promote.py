"""Promotion as a deliberate act: who moves ``@champion``, and ``geoensemble promote``.

Training registers every kept member as a *candidate* version carrying its score and lineage
(version tags: ``origin``, ``criterion``, ``criterion_value``, ``direction``, ``score_space``,
``family``, ``kind``, ``n_classes``, ``ensemble_run_id``, ``member``, and ``dvc_exp_name``,
``sweep_id``/``sweep_job``, ``git_commit`` when present). Only two things move the champion
alias (``predict.alias``, default ``champion``):

- the workspace pipeline: the train stage run with ``--params params.yaml`` (how ``dvc repro``
  runs it, so also that command typed by hand), outside a DVC experiment (no
  ``DVC_EXP_NAME``), a Hydra sweep and ``mlflow run``, on a ``params.yaml`` that git holds
  unchanged since ``HEAD`` (outside a git repository: only when DVC runs it, ``DVC_STAGE``);
- ``geoensemble promote version=N`` or ``geoensemble promote rule=best ensemble=...``.

Any other training names the best member of its ensemble with an alias of its own, shown in
the MLflow UI beside ``@champion``: ``exp-<DVC experiment>``, ``sweep-<sweep id>-job<N>``,
``mlflow-run-<run id[:8]>``, ``manual-<run id[:8]>`` (``python pipelines/train.py`` with
Hydra, or the API) and ``uncommitted-<run id[:8]>`` (the pipeline on a ``params.yaml`` that
differs from git ``HEAD``, or with overrides).

A degenerate candidate is never promoted: its criterion is not a finite number, it uses one
class or one cluster, or (a classifier) its kappa is NaN.
"""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoensemble.app.config import AppConfig, to_dict
from geoensemble.ensemble.scoring import space_id
from geoensemble.errors import ConfigError, ModelNotFoundError, PromotionError
from geoensemble.tracking import Tracker

log = logging.getLogger("geoensemble")

PIPELINE, UNCOMMITTED, DVC_EXP, SWEEP, MLFLOW_RUN, MANUAL = (
    "pipeline",
    "uncommitted",
    "dvc-exp",
    "sweep",
    "mlflow-run",
    "manual",
)
# Tags recording a promotion on the version promoted.
PROMOTION_TAGS = ("promoted_by", "promoted_at", "promotion_reason", "previous_champion")


# --------------------------------------------------------------------------- who trains
@dataclass(frozen=True)
class Origin:
    """Where a training runs, which decides the alias its best member gets.

    ``kind`` is one of ``pipeline``, ``uncommitted``, ``dvc-exp``, ``sweep``, ``mlflow-run``,
    ``manual``; ``detail`` says it in words; ``label`` is the alias name of an experiment or
    sweep job (others are named after their ensemble run).
    """

    kind: str
    detail: str
    label: str | None = None

    def alias(self, champion: str, parent_run_id: str) -> str:
        """The alias the best kept member gets: ``champion`` only for the workspace pipeline."""
        if self.kind == PIPELINE:
            return champion
        return alias_name(self.label or f"{self.kind}-{parent_run_id[:8]}")


def alias_name(text: str) -> str:
    """``text`` made a valid MLflow alias: letters, digits, ``_`` and ``-`` only, at most
    255 characters, never ``latest`` nor ``v<digits>`` (MLflow reserves those)."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:200] or "candidate"
    if name.lower() == "latest" or re.fullmatch(r"[vV]\d+", name):
        name = f"a-{name}"
    return name


def git_state(path: Path) -> str | None:
    """``clean``, ``modified``, ``untracked`` or ``ignored`` for ``path`` in its git work tree,
    ``None`` outside git (or without git)."""
    try:
        proc = subprocess.run(
            ["git", "status", "--porcelain", "--ignored", "--", path.name],
            cwd=path.parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    code = proc.stdout[:2]
    return {"": "clean", "??": "untracked", "!!": "ignored"}.get(code, "modified")


def training_origin() -> Origin:
    """Where the training of this process runs (see the module docstring).

    The workspace pipeline is recognised by how the stage was started (``--params`` with a
    file named ``params.yaml`` and no override) and what is absent from the environment
    (``DVC_EXP_NAME``: DVC sets it for every ``dvc exp run``, queued, temporary or in the
    workspace; the sweep id; ``MLFLOW_RUN_ID``), then by git: the file must be unchanged
    since ``HEAD``, so that ``@champion`` always comes from committed parameters.
    """
    from geoensemble import tracking
    from geoensemble.app.params import params_file

    env = os.environ
    if env.get(tracking.SWEEP_ID_VAR):
        from geoensemble.app.sweep import job_tags

        sweep = tracking.sweep_tags(job_tags())
        job = sweep.get("sweep_job", "")
        return Origin(
            SWEEP,
            f"Hydra sweep {sweep['sweep_id']} job {job or '?'}",
            f"sweep-{sweep['sweep_id']}-job{job}",
        )
    if env.get("DVC_EXP_NAME"):
        name = env["DVC_EXP_NAME"]
        return Origin(DVC_EXP, f"DVC experiment {name}", f"exp-{name}")
    if env.get("MLFLOW_RUN_ID"):
        return Origin(MLFLOW_RUN, f"mlflow run (run {env['MLFLOW_RUN_ID']})")
    given = params_file()
    if given is None:
        return Origin(MANUAL, "a training composed from conf/ (not the workspace pipeline)")
    path, overrides = given
    if path.name != "params.yaml":
        return Origin(MANUAL, f"a training on {path} (not the project's params.yaml)")
    if overrides:
        return Origin(UNCOMMITTED, f"{path} with overrides {' '.join(overrides)}")
    state = git_state(path.resolve())
    if state == "clean":
        return Origin(PIPELINE, "workspace pipeline on the committed params.yaml")
    if state is None and env.get("DVC_STAGE"):  # dvc repro in a project without git
        return Origin(PIPELINE, "workspace pipeline on params.yaml (dvc repro, no git)")
    if state is None:
        return Origin(MANUAL, f"a training on {path} outside git and DVC")
    return Origin(UNCOMMITTED, f"{path} is {state} in git (not the committed params.yaml)")


# --------------------------------------------------------------------------- candidates
def scoring_space(cfg: AppConfig) -> str:
    """A short id of what an ensemble's scores are computed on, to compare runs (sweep jobs).

    Two runs' ranking scores are comparable only when this id is equal: same model family and
    kind, same metric, and the same data, sample and common space (the ``features`` config
    except its member-specific ``steps`` and its display keys, the seed, the CV folds).
    Member-specific steps (PCA size...) may differ: members are scored in the common space.
    """
    whole = to_dict(cfg)
    features = {
        k: v
        for k, v in whole["features"].items()
        if k not in {"steps", "quicklooks", "false_colour"}
    }
    data = {k: v for k, v in whole["data"].items() if k != "truth"}
    key = {
        "model": [cfg.model.name, cfg.model.kind.value],
        "metric": cfg.ensemble.metric,
        "features": features,
        "data": data,
        "seed": cfg.seed,
        "cv": whole["ensemble"]["cv"],
        "store": cfg.paths.features,
    }
    return space_id(key)


def lineage_tags(cfg: AppConfig, origin: Origin, run_tags: Mapping[str, str]) -> dict[str, str]:
    """Version tags shared by every candidate of one ensemble: origin, criterion, scoring
    space, family, and the experiment, sweep and commit it came from."""
    tags = {
        "origin": origin.kind,
        "criterion": cfg.ensemble.metric,
        "direction": cfg.ensemble.direction.value,
        "score_space": scoring_space(cfg),
        "family": cfg.model.name,
        "kind": cfg.model.kind.value,
    }
    for key in ("dvc_exp_name", "sweep_id", "sweep_job", "git_commit"):
        if run_tags.get(key):
            tags[key] = run_tags[key]
    return tags


def degenerate(tags: Mapping[str, str]) -> str | None:
    """Why a candidate must not be promoted (from its version tags), or ``None``."""
    crit, value = tags.get("criterion"), tags.get("criterion_value")
    if not crit or value is None:
        return (
            "it records no criterion (tags criterion and criterion_value): it was not "
            "registered by the train stage"
        )
    if not math.isfinite(_float(value)):
        return f"its criterion {crit} is {value}"
    n = tags.get("n_classes")
    if n is not None and _float(n) < 2:
        what = "cluster" if tags.get("kind") == "cluster" else "class"
        return f"it uses only one {what}"
    if "kappa" in tags and not math.isfinite(_float(tags["kappa"])):
        return "its kappa is nan (its labels or predictions hold one class)"
    return None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


# --------------------------------------------------------------------------- moving the alias
def _move(
    tracker: Tracker,
    name: str,
    alias: str,
    version: str,
    *,
    by: str,
    reason: str,
    previous: str | None,
) -> None:
    """Point ``alias`` at ``version`` and record why on the version."""
    tracker.set_version_tags(
        name,
        version,
        {
            "promoted_by": by,
            "promoted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "promotion_reason": reason,
            "previous_champion": previous or "none",
        },
    )
    tracker.set_alias(name, alias, version)


def after_training(
    cfg: AppConfig,
    tracker: Tracker,
    origin: Origin,
    *,
    parent_run_id: str,
    version: str,
    tags: Mapping[str, str],
) -> dict[str, Any]:
    """Alias the ensemble's best kept member (registered as ``version`` with ``tags``).

    The workspace pipeline moves ``predict.alias`` to it unless it is degenerate; any other
    training gives it its own alias and leaves the champion where it is.

    Returns
    -------
    dict
        The ``registry`` entry of ``reports/train.json``: origin, alias set, whether the
        champion moved, the champion's version afterwards, and why it was refused.
    """
    name, champion = cfg.tracking.model_name, cfg.predict.alias
    alias = origin.alias(champion, parent_run_id)
    previous = tracker.alias_version(name, champion)
    refused = degenerate(tags) if origin.kind == PIPELINE else None
    current: str | None = version
    if origin.kind == PIPELINE and refused is None:
        _move(
            tracker, name, champion, version, by="pipeline", reason=origin.detail, previous=previous
        )
        log.info(
            "train: @%s of %s moved from version %s to %s (%s)",
            champion,
            name,
            previous or "none",
            version,
            origin.detail,
        )
    else:
        if origin.kind == PIPELINE:
            alias = alias_name(f"refused-{parent_run_id[:8]}")
            tracker.set_version_tags(name, version, {"promotion_refused": str(refused)})
            log.warning(
                "train: version %s of %s is not promoted to @%s: %s; @%s stays at version %s",
                version,
                name,
                champion,
                refused,
                champion,
                previous or "none",
            )
        tracker.set_alias(name, alias, version)
        current = previous
        if origin.kind != PIPELINE:
            log.info(
                "train: registered version %s of %s as a candidate (@%s, %s); @%s stays at "
                "version %s: `geoensemble promote version=%s` makes it the champion",
                version,
                name,
                alias,
                origin.detail,
                champion,
                previous or "none",
                version,
            )
    return {
        "origin": origin.kind,
        "detail": origin.detail,
        "alias": alias,
        "champion_alias": champion,
        "champion_moved": current == version and previous != version,
        "champion_version": current,
        "refused": refused,
    }


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
        _move(tracker, name, alias, chosen.version, by=by, reason=reason, previous=previous)
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
