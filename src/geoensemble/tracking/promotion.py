"""Who moves a registered model's champion alias, and how it is recorded.

Training registers every kept member as a *candidate* version carrying its score and lineage
(version tags). Only the workspace pipeline (:data:`PIPELINE`) moves the champion alias when
it trains, and only to a candidate that is not degenerate (:func:`degenerate`); any other
training sets no alias (:func:`alias_best_member`). ``geoensemble promote`` moves the alias
deliberately (:func:`move_alias`).

Plain values only: the application decides where a training runs and which names to use.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from geoensemble.tracking.tracker import Tracker

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


@dataclass(frozen=True)
class Origin:
    """Where a training runs, which decides whether it registers and moves the champion.

    ``kind`` is one of ``pipeline``, ``uncommitted``, ``dvc-exp``, ``sweep``, ``mlflow-run``,
    ``manual``; ``detail`` says it in words (both become version tags, never an alias).
    """

    kind: str
    detail: str


def degenerate(tags: Mapping[str, str]) -> str | None:
    """Why a candidate must not be promoted (from its version tags), or ``None``.

    A degenerate candidate's criterion is not a finite number, it uses one class or one
    cluster, or (a classifier) its kappa is NaN.
    """
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


def move_alias(
    tracker: Tracker,
    name: str,
    alias: str,
    version: str,
    *,
    by: str,
    reason: str,
    previous: str | None,
) -> None:
    """Point ``alias`` of model ``name`` at ``version`` and record why on the version
    (tags :data:`PROMOTION_TAGS`)."""
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


def alias_best_member(
    tracker: Tracker,
    origin: Origin,
    *,
    name: str,
    champion: str,
    parent_run_id: str,
    version: str | None,
    tags: Mapping[str, str],
) -> dict[str, Any]:
    """Move the champion to an ensemble's best kept member, registered as ``version`` of
    model ``name`` with version ``tags`` (``None``: not registered), when ``origin`` is the
    workspace pipeline.

    The workspace pipeline moves the ``champion`` alias to it unless it is degenerate (then
    the version is tagged ``promotion_refused`` with why); any other training sets no
    alias: its versions (when it registers) say where they came from in their tags.

    Parameters
    ----------
    tracker
        The opened store the version is registered in.
    origin
        Where the training runs (see :class:`Origin`).
    name, champion
        The registered model's name and its champion alias.
    parent_run_id
        The ensemble's parent run.
    version, tags
        The best member's version and its version tags (criterion, scores, lineage).

    Returns
    -------
    dict
        The ``registry`` entry of ``reports/train.json``: origin, whether it registered,
        the alias set (or ``None``), whether the champion moved, the champion's version
        afterwards, and why it was refused.
    """
    previous = tracker.alias_version(name, champion)
    refused = degenerate(tags) if origin.kind == PIPELINE and version else None
    alias: str | None = None
    if version is None:
        log.info(
            "train: kept members logged as models, not registered (%s); @%s of %s stays at "
            "version %s",
            origin.detail,
            champion,
            name,
            previous or "none",
        )
    elif origin.kind == PIPELINE and refused is None:
        alias = champion
        _promote(tracker, origin, name, champion, version, previous)
    elif origin.kind == PIPELINE:
        _refuse(tracker, name, champion, version, str(refused), previous)
    else:
        _candidate(origin, name, champion, version, previous)
    current = version if alias == champion else previous
    return {
        "origin": origin.kind,
        "detail": origin.detail,
        "registered": version is not None,
        "alias": alias,
        "champion_alias": champion,
        "champion_moved": version is not None and current == version and previous != version,
        "champion_version": current,
        "refused": refused,
        "parent_run_id": parent_run_id,
    }


def _promote(
    tracker: Tracker, origin: Origin, name: str, champion: str, version: str, previous: str | None
) -> None:
    """The workspace pipeline's best member becomes the champion."""
    move_alias(
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


def _refuse(
    tracker: Tracker,
    name: str,
    champion: str,
    version: str,
    refused: str,
    previous: str | None,
) -> None:
    """A degenerate best member of the pipeline: tagged with why, no alias."""
    tracker.set_version_tags(name, version, {"promotion_refused": refused})
    log.warning(
        "train: version %s of %s is not promoted to @%s: %s; @%s stays at version %s",
        version,
        name,
        champion,
        refused,
        champion,
        previous or "none",
    )


def _candidate(
    origin: Origin, name: str, champion: str, version: str, previous: str | None
) -> None:
    """The best member of a training outside the pipeline, registered on request."""
    log.info(
        "train: registered version %s of %s as a candidate (%s); @%s stays at version %s: "
        "`geoensemble promote version=%s` makes it the champion",
        version,
        name,
        origin.detail,
        champion,
        previous or "none",
        version,
    )
