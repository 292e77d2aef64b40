"""The committed ``dvc.lock`` vouches for the data: a fresh copy reproduces it byte for byte.

The data stages (scene, ingest, featurize, labels) are deterministic, so ``dvc repro`` of a
fresh copy of the project must give the very hashes the committed lock records. Train,
evaluate and predict legitimately differ: their outputs name MLflow run ids and model
versions of the store they ran against.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, run, tool
from tests.integration.conftest import copy_project

pytestmark = pytest.mark.integration

DATA_STAGES = ("scene", "ingest", "featurize", "labels")


def _outs(lock: dict[str, Any], stage: str) -> dict[str, str]:
    return {o["path"]: o["md5"] for o in lock["stages"][stage]["outs"]}


def test_lock_is_committed_for_the_default_pipeline() -> None:
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(lock["stages"]) == set(stages)
    tracked = run(["git", "ls-files", "dvc.lock"], ROOT).stdout.strip()
    assert tracked == "dvc.lock", "dvc.lock is not committed"


def test_fresh_copy_reproduces_the_data_stages_byte_for_byte(tmp_path: Path) -> None:
    committed = yaml.safe_load((ROOT / "dvc.lock").read_text())
    d = copy_project(tmp_path / "project")
    shutil.copy2(ROOT / "dvc.lock", d / "dvc.lock")
    run(["git", "init", "-q", "-b", "main"], d)
    run(["git", "add", "-A"], d)
    run(["git", "commit", "-qm", "fresh copy"], d)
    run([tool("dvc"), "repro", "--force", *DATA_STAGES], d, timeout=900)
    fresh = yaml.safe_load((d / "dvc.lock").read_text())
    for stage in DATA_STAGES:
        assert _outs(fresh, stage) == _outs(committed, stage), stage
