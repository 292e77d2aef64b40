"""``geoensemble registry list|prune [--dry-run]``: the versions geoensemble registered, and
deleting those that no alias holds.

Only versions tagged ``geoensemble.registered_by=geoensemble`` are listed or deleted (what
someone else registered in the same store is never touched), and only when no alias (such
as ``@champion``) points at them. Deleting a version removes it from the registry only: its
member run and logged model stay in the experiment.
"""

from __future__ import annotations

from typing import Any

from geoensemble.app.config import AppConfig


def registry(cfg: AppConfig) -> dict[str, Any]:
    """List (``registry.action=list``) or prune (``prune``, with ``registry.dry_run``) the
    versions geoensemble registered in the store of ``tracking.uri``; print one line per
    version and a summary."""
    from geoensemble.app.tracker import tracker_for

    tracker = tracker_for(cfg.tracking)
    tracker.open()
    versions = tracker.our_versions()
    unheld = [v for v in versions if not v.aliases]
    prune, dry = cfg.registry.action.value == "prune", cfg.registry.dry_run
    for v in versions:
        held = " ".join(f"@{a}" for a in v.aliases)
        what = held or ("deleted" if prune and not dry else "held by no alias")
        crit = v.tags.get("criterion")
        score = f"{crit}={v.tags.get('criterion_value')}, " if crit else ""
        print(
            f"{v.name} version {v.version}: {what} ({score}origin "
            f"{v.tags.get('origin', '?')}, member {v.tags.get('member', '?')})",
            flush=True,
        )
        if prune and not dry and not v.aliases:
            tracker.delete_version(v.name, v.version)
    verb = "would delete" if dry else "deleted"
    tail = (
        f"{verb} {len(unheld)} held by no alias"
        if prune
        else f"{len(unheld)} held by no alias (geoensemble registry prune deletes them)"
    )
    print(f"geoensemble registry: {len(versions)} version(s) registered by geoensemble; {tail}")
    return {
        "versions": [f"{v.name}/{v.version}" for v in versions],
        "unheld": [f"{v.name}/{v.version}" for v in unheld],
        "deleted": [f"{v.name}/{v.version}" for v in unheld] if prune and not dry else [],
    }
