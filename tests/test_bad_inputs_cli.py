"""The error contract of the real command line, end to end in subprocesses.

``python pipelines/<stage>.py``: a bad override (Hydra's composition errors) prints one line
naming the override and exits 1; a geoensemble error prints one line and exits 2; neither
prints a traceback unless ``GEOENSEMBLE_DEBUG=1``. The bad inputs themselves are covered
in-process by ``test_bad_inputs.py``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from geoensemble.app.config import to_dict
from geoensemble.app.params import compose
from geoensemble.app.validate import validate
from tests.conftest import ROOT, TINY, run


def stage(name: str, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``python pipelines/<name>.py args`` from ``cwd`` (Hydra writes its logs there)."""
    script = str(ROOT / "pipelines" / f"{name}.py")
    return run([sys.executable, script, *args], cwd, timeout=120, check=False, **env)


def the_error_line(proc: subprocess.CompletedProcess[str], name: str) -> str:
    """The stage's one error line; fails if there is a traceback or more than one."""
    err = proc.stderr
    assert "Traceback" not in err and "HYDRA_FULL_ERROR" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"geoensemble {name}: ")]
    assert len(lines) == 1 and lines[0].startswith(f"geoensemble {name}: error: "), err
    return lines[0]


def outputs_in(d: Path) -> list[Path]:
    """Files under ``d`` except Hydra's own run logs."""
    return [p for p in d.rglob("*") if p.is_file() and "logs" not in p.relative_to(d).parts]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "ensemble.sizee=3",
            r"unknown config key 'ensemble\.sizee' in the override 'ensemble\.sizee=3': "
            r"did you mean 'ensemble\.size'\? Check its spelling",
        ),
        (
            "model=kmean",
            r"no option 'kmean' in the config group 'model' \(conf/model/\): did you mean "
            r"model=kmeans\? Choose one of gmm, .*kmeans",
        ),
        ("ensemble.size=[1,", r"cannot parse the overrides ensemble\.size=\[1,: .*write key=value"),
    ],
    ids=["unknown-key", "unknown-group-option", "syntax"],
)
def test_a_bad_override_is_one_line_with_exit_code_2(
    override: str, message: str, tmp_path: Path
) -> None:
    proc = stage("train", override, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert re.search(message, the_error_line(proc, "train")), proc.stderr
    assert not outputs_in(tmp_path)


def test_a_geoensemble_error_is_one_line_with_exit_code_2_and_a_traceback_only_when_debugging(
    tmp_path: Path,
) -> None:
    args = [
        f"data.path={tmp_path}/nowhere",
        f"paths.stack={tmp_path}/stack",
        f"paths.reports={tmp_path}/reports",
    ]
    proc = stage("ingest", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    line = the_error_line(proc, "ingest")
    assert re.search(r"input .*/nowhere does not exist: set data\.path to your folder", line)
    assert not outputs_in(tmp_path)

    debug = stage("ingest", *args, cwd=tmp_path, GEOENSEMBLE_DEBUG="1")
    assert debug.returncode == 2
    assert "Traceback (most recent call last)" in debug.stderr
    assert "geoensemble.errors.InputFileError: input" in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1] == line  # the one line still ends it


def test_a_stage_run_before_its_input_exists_through_a_params_file(tmp_path: Path) -> None:
    """How ``dvc repro`` calls the stages: ``--params params.yaml``."""
    paths = [f"paths.{p}={tmp_path}/{p}" for p in ("raw", "stack", "features", "labels", "reports")]
    cfg = validate(
        compose(
            [*TINY, *paths, f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"],
            config_dir=ROOT / "conf",
        )
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(to_dict(cfg)))
    proc = stage("train", "--params", "params.yaml", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    line = the_error_line(proc, "train")
    assert re.search(r"/features is not a finished geoensemble store: run the stage", line)
    assert [p.name for p in outputs_in(tmp_path)] == ["params.yaml"]

    missing = stage("train", "--params", "nowhere.yaml", cwd=tmp_path)
    assert missing.returncode == 2
    assert re.search(r"config file nowhere\.yaml does not exist", the_error_line(missing, "train"))


def test_hydra_job_chdir_keeps_the_configs_relative_paths_where_the_user_ran_it(
    tmp_path: Path,
) -> None:
    """With hydra.job.chdir=true Hydra moves the job into its run folder; data/raw/scene
    still means the folder the command was run from (it was reported missing)."""
    (tmp_path / "data" / "raw").mkdir(parents=True)
    proc = stage(
        "scene",
        "hydra.job.chdir=true",
        "data.scene.width=64",
        "data.scene.height=64",
        "data.scene.n_points=20",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "data/raw/scene").glob("B*.TIF"))[:2] == [
        "B1.TIF",
        "B2.TIF",
    ]
    proc = stage(
        "ingest",
        "hydra.job.chdir=true",
        "paths.stack=data/stack",
        "paths.reports=reports",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "data/stack").is_dir() and (tmp_path / "reports").is_dir()
