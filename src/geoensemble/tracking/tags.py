"""Provenance tags of runs: git commit, DVC experiment, Hydra sweep, owning process."""

from __future__ import annotations

import os
import socket
import subprocess
from typing import Any

from geoensemble.tracking.store import store_root


def run_tags() -> dict[str, str]:
    """Provenance tags: git commit of the project and the DVC experiment name when present."""
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
    tags.update(sweep_tags())
    return tags


SWEEP_ID_VAR = "GEOENSEMBLE_SWEEP_ID"
SWEEP_RUN_VAR = "GEOENSEMBLE_SWEEP_RUN_ID"


def sweep_tags() -> dict[str, str]:
    """``sweep_id``, job number and overrides of a Hydra multirun job (empty otherwise).

    The sweep id comes from the environment, set by :mod:`geoensemble.app.sweep` in the process
    that launches the jobs, so jobs in other processes (joblib launcher) share it.
    """
    sweep_id = os.environ.get(SWEEP_ID_VAR)
    if not sweep_id:
        return {}
    tags = {"sweep_id": sweep_id}
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if HydraConfig.initialized():
        hc: Any = HydraConfig.get()  # a DictConfig at run time
        num = OmegaConf.select(hc, "job.num")
        if num is not None:
            tags["sweep_job"] = str(num)
        tags["sweep_overrides"] = " ".join(OmegaConf.select(hc, "overrides.task") or [])
    return tags


OWNER_HOST, OWNER_PID = "geoensemble.host", "geoensemble.pid"


def owner_tags() -> dict[str, str]:
    """The host and process that own a run they create and end (every run geoensemble
    starts: ensemble parent, members, predict, sweep)."""
    return {OWNER_HOST: socket.gethostname(), OWNER_PID: str(os.getpid())}
