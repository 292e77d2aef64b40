"""Shared fixtures: tiny seeded scenes with a real CRS, composed configs, tool paths."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import configuration as hypothesis_configuration

from geoensemble.app.config import AppConfig
from geoensemble.app.params import compose
from geoensemble.app.validate import validate

ROOT = Path(__file__).resolve().parents[1]

# hypothesis writes its database and a constants cache under the working folder as test
# modules are collected, before any fixture runs: point it at a scratch folder right away.
_HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="geoensemble-hypothesis-")
hypothesis_configuration.set_hypothesis_home_dir(_HYPOTHESIS_HOME)
atexit.register(shutil.rmtree, _HYPOTHESIS_HOME, ignore_errors=True)
SHARED_DATA = ROOT.parent / "shared" / "data"
BIN = Path(sys.executable).parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow") or os.environ.get("GEOENSEMBLE_RUNSLOW"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def tool(name: str) -> str:
    """A console script of this environment (dvc, mlflow, dask), else from PATH."""
    p = BIN / name
    if p.exists():
        return str(p)
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed")
    return found


def tool_env(**extra: str) -> dict[str, str]:
    """Environment for subprocesses: this venv first on PATH, a git identity, no telemetry."""
    # (a LocalCluster with dask's default config sets MALLOC_TRIM_THRESHOLD_ in the process
    # that starts it, so a test run after one in the same process would pass it on)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "DVC_")) and k != "MALLOC_TRIM_THRESHOLD_"
    }
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="geoensemble-tests",
        GIT_AUTHOR_EMAIL="tests@example.com",
        GIT_COMMITTER_NAME="geoensemble-tests",
        GIT_COMMITTER_EMAIL="tests@example.com",
        PYTHONWARNINGS="ignore",
    )
    env.update(extra)
    return env


def run(
    cmd: list[str], cwd: Path, *, timeout: float = 600, check: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run a command, failing the test with its output if it fails."""
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=tool_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} exited {proc.returncode}\nSTDOUT:\n{proc.stdout[-4000:]}"
            f"\nSTDERR:\n{proc.stderr[-6000:]}"
        )
    return proc


TINY = [
    "data.scene.width=128",
    "data.scene.height=112",
    "data.scene.n_points=120",
    "features.sample.size=6000",
    "ensemble.size=3",
    "ensemble.generations=1",
    "ensemble.keep=1",
    "data.chunk_size=64",
    "predict.block_size=64",
    "compute.n_workers=1",
    "compute.processes=false",
    # tests that are not about the naming rule or when training registers
    # (tests/integration/test_mlflow_users.py and test_promotion.py are): every stage run by
    # hand registers its kept members, as before the registration rule
    "tracking.model_name=geoensemble",
    "tracking.register=always",
]


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., AppConfig]:
    """Compose ``conf/`` with overrides; every path points into ``tmp_path``."""

    def _make(*overrides: str) -> AppConfig:
        paths = [
            f"paths.raw={tmp_path}/raw",
            f"paths.stack={tmp_path}/stack",
            f"paths.features={tmp_path}/features",
            f"paths.labels={tmp_path}/labels",
            f"paths.reports={tmp_path}/reports",
            f"data.path={tmp_path}/raw/scene",
            f"data.truth={tmp_path}/raw/labels/truth.tif",
            f"data.labels.path={tmp_path}/raw/labels/points.geojson",
            f"predict.output_dir={tmp_path}/maps",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        ]
        return validate(compose([*TINY, *paths, *overrides], config_dir=ROOT / "conf"))

    return _make


@pytest.fixture
def rmnp() -> Path:
    """The real RMNP GeoTiffs from ../shared/data (skipped when absent)."""
    folder = SHARED_DATA / "rmnp"
    if not (folder / "red.tif").exists():
        pytest.skip("../shared/data/rmnp is not available")
    return folder


def _checkout_state() -> set[str]:
    """Untracked and ignored entries of the checkout (``git status``), caches aside."""
    out = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    skip = (".venv/", "src/geoensemble.egg-info/", ".mypy_cache/", ".ruff_cache/")
    return {
        ln
        for ln in out.splitlines()
        if not ln[3:].startswith(skip) and "__pycache__/" not in ln and ".pytest_cache/" not in ln
    }


@pytest.fixture(scope="session", autouse=True)
def _leave_the_checkout_alone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Run the suite from a scratch folder and check the checkout is as it was at the end.

    MLflow's default store, Hydra's logs and hypothesis' database all go to the working
    folder; a test that needs the checkout passes ``cwd=ROOT`` explicitly and must still
    leave nothing behind (Hydra logs go to ``GEOENSEMBLE_LOG_DIR``, a SQLite store's
    artifacts beside its database file).
    """
    before = _checkout_state() if (ROOT / ".git").exists() else set()
    scratch = tmp_path_factory.mktemp("cwd")
    # a project folder of its own: a git repo, so runs there carry a git commit tag
    run(["git", "init", "-q"], scratch)
    run(["git", "commit", "-q", "--allow-empty", "-m", "scratch"], scratch)
    old_cwd, old_logs = Path.cwd(), os.environ.get("GEOENSEMBLE_LOG_DIR")
    os.environ["GEOENSEMBLE_LOG_DIR"] = str(scratch / "logs")
    os.chdir(scratch)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        if old_logs is None:
            os.environ.pop("GEOENSEMBLE_LOG_DIR", None)
        else:
            os.environ["GEOENSEMBLE_LOG_DIR"] = old_logs
    try:
        if (ROOT / ".git").exists():
            left = sorted(_checkout_state() - before)
            assert not left, f"the tests left these in the checkout: {left}"
    finally:
        # geoensemble's exit handler closes runs a failed stage left open, each in its own
        # store; the in-process stages of the tests used many stores, now gone (reopening one
        # would create it again): nothing is left to close.
        from geoensemble.tracking import session

        session.forget()
