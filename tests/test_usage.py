"""`geoensemble --help` and `geoensemble <stage> --help` explain the command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from geoensemble.app.stages import STAGES
from geoensemble.app.usage import STAGE_HELP
from tests.conftest import ROOT, tool, tool_env


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("geoensemble"), *args], capture_output=True, text=True, env=tool_env(), timeout=60
    )


def test_every_stage_has_help() -> None:
    assert list(STAGE_HELP) == list(STAGES)


def test_main_help_lists_the_stages() -> None:
    r = _run("--help")
    assert r.returncode == 0, r.stderr
    listed = [ln.split()[0] for ln in r.stdout.splitlines() if ln.startswith("  ")]
    assert listed == list(STAGES)
    assert "geoensemble <stage> --help" in r.stdout


@pytest.mark.parametrize("stage", ["train", "predict"])
def test_stage_help_says_what_it_reads_and_writes(stage: str) -> None:
    r = _run(stage, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: geoensemble {stage}")
    assert f"reads:  {STAGE_HELP[stage].reads}" in r.stdout
    assert f"writes: {STAGE_HELP[stage].writes}" in r.stdout
    assert "Traceback" not in r.stderr


def test_pipeline_script_help_is_the_stage_help() -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "pipelines" / "ingest.py"), "--help"],
        capture_output=True,
        text=True,
        env=tool_env(),
        timeout=60,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    assert "reads:  data.path" in r.stdout


def test_unknown_stage_is_one_line() -> None:
    r = _run("trian")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "geoensemble: error: no stage 'trian': choose one of "
        + ", ".join(STAGES)
        + " (geoensemble --help describes them)"
    ]
