"""Provenance tags of runs: git commit, DVC experiment, Hydra sweep, owning process."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Mapping

from geoensemble.tracking.store import store_root


def run_tags(job: Mapping[str, str] | None = None) -> dict[str, str]:
    """Provenance tags: git commit of the project, the DVC experiment name and the sweep
    (with ``job``'s tags, see :func:`sweep_tags`) when present."""
    tags = {}
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=store_root(),
            timeout=10,
            check=False,
        ).stdout.strip()
        if sha:
            tags["mlflow.source.git.commit"] = sha
            tags["git_commit"] = sha
    except (OSError, subprocess.SubprocessError):
        pass
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    tags.update(sweep_tags(job))
    return tags


SWEEP_ID_VAR = "GEOENSEMBLE_SWEEP_ID"
SWEEP_RUN_VAR = "GEOENSEMBLE_SWEEP_RUN_ID"


def sweep_tags(job: Mapping[str, str] | None = None) -> dict[str, str]:
    """``sweep_id`` of a Hydra multirun job (empty otherwise), with ``job``'s tags
    (``sweep_job``, ``sweep_overrides``: what the application knows of the job).

    The sweep id comes from the environment, set by :mod:`geoensemble.app.sweep` in the process
    that launches the jobs, so jobs in other processes (joblib launcher) share it.
    """
    sweep_id = os.environ.get(SWEEP_ID_VAR)
    if not sweep_id:
        return {}
    return {"sweep_id": sweep_id, **(job or {})}


OWNER_HOST, OWNER_PID = "geoensemble.host", "geoensemble.pid"


def owner_tags() -> dict[str, str]:
    """The host and process that own a run they create and end (every run geoensemble
    starts: ensemble parent, members, predict, sweep)."""
    return {OWNER_HOST: socket.gethostname(), OWNER_PID: str(os.getpid())}
