"""The benchmarks run at a tiny size and print their variants' definitions and ratios.

No timing is asserted: figures depend on the machine. The harness itself is checked on
trivial processes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, tool_env

sys.path.insert(0, str(ROOT / "benchmarks"))
import harness


def test_harness_times_whole_processes_in_rounds_with_peak_rss_and_phases(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = (
        "import numpy as np; a = np.ones(40_000_000, np.uint8); "
        "print('x: seconds by phase: {\"work\": 0.5}')"
    )
    big = harness.Variant("big", "allocates 40 MB", [sys.executable, "-c", code])
    small = harness.Variant("small", "does nothing", [sys.executable, "-c", "pass"])
    harness.print_definitions("demo", [big, small])
    runs = harness.interleaved([big, small], repeats=2)
    sums = harness.report(runs, ratios=[("big / small", "big", "small")])
    out = capsys.readouterr().out
    assert "big: allocates 40 MB" in out and "small: does nothing" in out
    assert "ratio big / small:" in out and "phases: work 0.50 s" in out
    # rounds alternate: big, small, big, small
    assert [ln.split()[2] for ln in out.splitlines() if ln.lstrip().startswith("round ")] == [
        "big",
        "small",
        "big",
        "small",
    ]
    assert sums["big"].peak_rss_mb > sums["small"].peak_rss_mb + 30
    assert sums["big"].phases == {"work": 0.5} and sums["small"].phases == {}
    with pytest.raises(SystemExit, match="variant bad failed"):
        harness.run_process(harness.Variant("bad", "fails", [sys.executable, "-c", "1/0"]))


def bench(tmp_path: Path, script: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=tmp_path,
        env=tool_env(PYTHONPATH=str(ROOT / "src"), TMPDIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_predict_benchmark_runs_tiny_and_prints_definitions(tmp_path: Path) -> None:
    out = bench(tmp_path, "predict_benchmark.py", "--mpx", "0.3", "--repeats", "1")
    for name in ("stage", "stage-lean", "floor", "notebook"):
        assert f"  {name}: " in out  # its definition
    assert "ratio stage / floor:" in out and "ratio stage-lean / floor:" in out
    assert "phases: startup" in out and "target stage/floor <= 0.95" in out


@pytest.mark.slow
def test_ensemble_benchmark_runs_tiny_and_prints_definitions(tmp_path: Path) -> None:
    out = bench(
        tmp_path, "ensemble_benchmark.py", "--pixels", "5000", "--members", "3", "--repeats", "1"
    )
    assert "  cluster: " in out and "  loop: plain loop" in out
    assert "ratio cluster / loop:" in out and "phases: start the scheduler" in out


@pytest.mark.slow
def test_scale_benchmark_runs_tiny_and_prints_definitions(tmp_path: Path) -> None:
    out = bench(tmp_path, "scale_benchmark.py", "--mpx", "0.3")
    for name in ("ingest", "featurize", "predict", "predict-dist-1", "predict-dist-2"):
        assert f"  {name}: " in out
    assert "ratio throughput 2 workers / 1 worker:" in out and "s/Mpx" in out
