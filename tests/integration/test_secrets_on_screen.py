"""A tracking password never reaches the screen or the log files (issue 21).

With a tracking URI carrying ``user:password@``, MLflow prints its own ``View run ... at:``
links and Hydra echoes overrides in its errors. Train, predict, a sweep and a parse error are
run as the user would, against a real ``mlflow server`` on loopback (which ignores the basic
credentials), and their stdout, stderr and log files are searched for the password.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, run
from tests.integration.conftest import Server, tiny_overrides

pytestmark = pytest.mark.integration

PASSWORD = "S3cretPW0rd"


def secret_uri(server: Server) -> str:
    return server.url.replace("http://", f"http://alice:{PASSWORD}@")


def stage(name: str, tmp: Path, *args: str, check: bool = True) -> tuple[str, int]:
    proc = run(
        [sys.executable, str(ROOT / "pipelines" / f"{name}.py"), *args],
        tmp,
        timeout=600,
        check=False,
        GEOENSEMBLE_LOG_DIR=str(tmp / "logs"),
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr, proc.returncode


def test_train_predict_a_sweep_and_a_parse_error_never_show_the_password(
    mlflow_server: Server, tiny_store: Path, tmp_path: Path
) -> None:
    uri = secret_uri(mlflow_server)
    common = [
        *tiny_overrides(tiny_store),
        f"tracking.uri={uri}",
        "tracking.experiment=secrets",
        "tracking.model_name=secrets_model",
        f"paths.reports={tmp_path}/reports",
        f"predict.output_dir={tmp_path}/maps",
    ]
    screens: dict[str, str] = {}
    screens["train"], _ = stage("train", tmp_path, *common, "ensemble.size=2")
    screens["predict"], _ = stage(
        "predict",
        tmp_path,
        *common,
        "predict.progress=false",
        "predict.model_uri=models:/secrets_model/1",
    )
    screens["sweep"], _ = stage(
        "train",
        tmp_path,
        "-m",
        *common,
        "ensemble.size=2",
        f"paths.reports={tmp_path}/sweep_reports/${{hydra:job.num}}",
        f"hydra.sweep.dir={tmp_path}/sweep",
        "seed=1,2",
    )
    screens["parse"], code = stage(
        "train", tmp_path, f"tracking.uri={uri}", "ensemble.size=[1,", check=False
    )
    assert code == 2

    assert "View run" in screens["train"]  # MLflow's own link is still there, redacted
    assert "alice:***@" in screens["train"] and "alice:***@" in screens["parse"]
    for name, text in screens.items():
        assert PASSWORD not in text, f"{name}: {text[-2000:]}"
    logged = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in {".log", ".txt"}]
    assert logged
    for p in logged:
        assert PASSWORD not in p.read_text(errors="replace"), p
