"""A stage run by hand does not write into the outputs of the DVC pipeline unless told to."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from geoensemble.app.stages import PIPELINE, stage_outputs
from tests.conftest import ROOT, tool_env

SMALL = ["data.scene.width=64", "data.scene.height=48", "data.scene.n_points=20"]


def _scene(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "pipelines" / "scene.py"), *SMALL, *args],
        cwd=cwd,
        env=tool_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder holding the pipeline's dvc.yaml (the stage reads conf/ of the checkout)."""
    shutil.copy2(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    return tmp_path


def test_a_hand_run_into_a_pipeline_output_is_refused(project: Path) -> None:
    r = _scene(project)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        "geoensemble scene: error: paths.raw=data/raw would write data/raw/scene, an output of "
        "the DVC stage 'scene' (dvc.yaml), outside dvc repro: run it through DVC (dvc repro "
        "scene, or dvc exp run -S key=value for a variant), write elsewhere "
        "(paths.raw=<another folder>), or allow it with paths.dvc_outputs=allow"
    ]
    assert sorted(p.name for p in project.iterdir()) == ["dvc.yaml"]  # nothing written


def test_elsewhere_allowed_or_under_dvc_it_runs(project: Path) -> None:
    assert _scene(project, "paths.raw=mine").returncode == 0
    assert (project / "mine" / "scene" / "B1.TIF").exists()
    assert _scene(project, "paths.dvc_outputs=allow").returncode == 0
    assert (project / "data" / "raw" / "scene" / "B1.TIF").exists()
    # what dvc repro runs: DVC names the stage in the environment
    r = _scene(project, "paths.dvc_outputs=refuse", DVC_STAGE="scene")
    assert r.returncode == 0, r.stderr


def test_every_pipeline_output_of_the_default_config_is_guarded() -> None:
    """Each stage's default outputs are outputs of dvc.yaml (so the guard sees them all)."""
    from geoensemble.app.dvcfiles import dvc_owner
    from geoensemble.app.params import compose
    from geoensemble.app.validate import validate

    cfg = validate(compose([], config_dir=ROOT / "conf"))
    for stage in PIPELINE:
        owners = {dvc_owner(p, ROOT) for _, p in stage_outputs(cfg, stage)}
        assert None not in owners, stage
        assert {s for _, s in owners} == {stage}, stage  # type: ignore[misc]
