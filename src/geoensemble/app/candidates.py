"""The candidates a training registers: where it runs, whether it registers, what they carry.

Every training logs its kept members as MLflow models (on their member runs). Registering
them as versions of the registered model ``tracking.model_name`` (by default
``<data.name>-<model.name>``, e.g. ``synthetic-kmeans``) is deliberate
(``tracking.register``): ``auto`` (the default) registers only in the workspace pipeline,
``always`` in any training, ``never`` in none. A registered candidate carries its score and
lineage (version tags: ``origin``, ``criterion``, ``criterion_value``, ``direction``,
``score_space``, ``family``, ``kind``, ``n_classes``, ``ensemble_run_id``, ``member``, and
``dvc_exp_name``, ``sweep_id``/``sweep_job``, ``mlflow_run_id``, ``git_commit`` when
present); a member whose content is already registered is not registered again. Only two
things move the champion alias (``predict.alias``, default ``champion``):

- the workspace pipeline: the train stage run with ``--params params.yaml`` (how ``dvc repro``
  runs it, so also that command typed by hand), outside a DVC experiment (no
  ``DVC_EXP_NAME``), a Hydra sweep and ``mlflow run``, on a ``params.yaml`` that git holds
  unchanged since ``HEAD`` (outside a git repository: only when DVC runs the stage,
  ``DVC_STAGE``);
- ``geoensemble promote version=N`` or ``geoensemble promote rule=best ensemble=...``
  (:mod:`geoensemble.app.promote`).

No other alias is set: where a version came from is in its tags, not in an alias.

A degenerate candidate is never promoted (:func:`geoensemble.tracking.promotion.degenerate`).
The rules on plain values live in :mod:`geoensemble.tracking.promotion`; this module reads
them off the config, the command line, the environment and git.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geoensemble.app.config import AppConfig, to_dict
from geoensemble.ensemble.scoring import space_id
from geoensemble.tracking import Tracker
from geoensemble.tracking.promotion import (
    DVC_EXP,
    MANUAL,
    MLFLOW_RUN,
    PIPELINE,
    SWEEP,
    UNCOMMITTED,
    Origin,
    alias_best_member,
)


# --------------------------------------------------------------------------- who trains
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
    from geoensemble.app.params import params_file

    env = os.environ
    origin = _environment_origin(env)
    if origin is not None:
        return origin
    given = params_file()
    if given is None:
        return Origin(MANUAL, "a training composed from conf/ (not the workspace pipeline)")
    path, overrides = given
    if path.name != "params.yaml":
        return Origin(MANUAL, f"a training on {path} (not the project's params.yaml)")
    if overrides:
        return Origin(UNCOMMITTED, f"{path} with overrides {' '.join(overrides)}")
    return _params_yaml_origin(path, env)


def _environment_origin(env: Mapping[str, str]) -> Origin | None:
    """A sweep job, a DVC experiment or ``mlflow run``, told by the environment they set
    (it wins over the command line), else ``None``."""
    from geoensemble import tracking

    if env.get(tracking.SWEEP_ID_VAR):
        from geoensemble.app.sweep import job_tags

        sweep = tracking.sweep_tags(job_tags())
        job = sweep.get("sweep_job", "")
        return Origin(SWEEP, f"Hydra sweep {sweep['sweep_id']} job {job or '?'}")
    if env.get("DVC_EXP_NAME"):
        name = env["DVC_EXP_NAME"]
        return Origin(DVC_EXP, f"DVC experiment {name}")
    if env.get("MLFLOW_RUN_ID"):
        return Origin(MLFLOW_RUN, f"mlflow run (run {env['MLFLOW_RUN_ID']})")
    return None


def _params_yaml_origin(path: Path, env: Mapping[str, str]) -> Origin:
    """The pipeline only on the ``params.yaml`` git holds unchanged since ``HEAD`` (outside
    git: only when DVC runs the stage)."""
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
    if os.environ.get("MLFLOW_RUN_ID"):
        tags["mlflow_run_id"] = os.environ["MLFLOW_RUN_ID"]
    return tags


def registers(cfg: AppConfig, origin: Origin) -> bool:
    """Whether this training registers its kept members (``tracking.register``: ``auto``
    only in the workspace pipeline, ``always``, ``never``)."""
    mode = cfg.tracking.register.value
    return mode == "always" or (mode == "auto" and origin.kind == PIPELINE)


def model_description(cfg: AppConfig) -> str:
    """The description of the registered model ``tracking.model_name`` (when created)."""
    return (
        f"{cfg.model.name} ({cfg.model.kind.value}) ensemble members trained on data set "
        f"{cfg.data.name} by geoensemble. Each version is a kept member (tags: criterion, "
        f"criterion_value, rank, origin, ensemble_run_id); @{cfg.predict.alias} is the one "
        f"predict uses, moved only by the workspace pipeline (dvc repro) or geoensemble "
        f"promote. See docs/mlflow-registry.md."
    )


def after_training(
    cfg: AppConfig,
    tracker: Tracker,
    origin: Origin,
    *,
    parent_run_id: str,
    version: str | None,
    tags: Mapping[str, str],
) -> dict[str, Any]:
    """Move the champion to the ensemble's best kept member (registered as ``version``
    with ``tags``; ``None``: not registered) when the workspace pipeline trained it.

    The workspace pipeline moves ``predict.alias`` to it unless it is degenerate; any other
    training leaves the champion where it is (see
    :func:`geoensemble.tracking.promotion.alias_best_member`).

    Returns
    -------
    dict
        The ``registry`` entry of ``reports/train.json``: origin, alias set, whether the
        champion moved, the champion's version afterwards, and why it was refused.
    """
    return alias_best_member(
        tracker,
        origin,
        name=cfg.tracking.model_name,
        champion=cfg.predict.alias,
        parent_run_id=parent_run_id,
        version=version,
        tags=tags,
    )
