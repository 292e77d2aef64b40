"""The benchmarks' shared timing harness: whole processes, interleaved, medians and ratios.

Every variant is a command run as its own process from start to exit, imports included, so
what is measured is what a user waits for. Variants are run in interleaved rounds (A B A B
...), so that a change in the machine's load hits all of them alike, and summarised by the
median of their wall times. A process's peak resident memory comes from the kernel, not
from sampling: GNU ``/usr/bin/time`` (``%M``) starts each variant, because a child's
``ru_maxrss`` starts from the RSS of the process that forked it (the benchmark itself, with
its libraries loaded) and would hide a small variant's own peak. Without ``/usr/bin/time``
the figure is ``os.wait4``'s, an upper bound.

A variant that prints a line ``... seconds by phase: {json}`` (the predict stage logs one;
see :mod:`geoensemble.predict.timing`) has those phases reported too, as medians.

Every report starts with the variants' definitions: a figure without them is not a result.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PHASES_MARK = "seconds by phase: "


@dataclass
class Variant:
    """One thing to time: a command and what it is, in words."""

    name: str
    definition: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None


@dataclass
class Run:
    """One process of a variant."""

    seconds: float
    peak_rss_mb: float
    phases: dict[str, float]
    stdout: str
    stderr: str


def python() -> str:
    """The interpreter the benchmark runs under (the variants use the same)."""
    return sys.executable


GNU_TIME = "/usr/bin/time"


def scene_profile(side: int, *, tile: int = 512, **extra: object) -> dict[str, object]:
    """The rasterio profile of one synthetic benchmark band: ``side`` x ``side`` uint16,
    no-data 0, UTM 13N at 30 m, LZW-compressed 512-px tiles (as a user's Landsat scene)."""
    from affine import Affine

    return {
        "driver": "GTiff",
        "width": side,
        "height": side,
        "count": 1,
        "dtype": "uint16",
        "nodata": 0,
        "crs": "EPSG:32613",
        "transform": Affine(30, 0, 400_000, 0, -30, 4_500_000),
        "tiled": True,
        "blockxsize": tile,
        "blockysize": tile,
        "compress": "lzw",
        "predictor": 2,
        **extra,
    }


def register_champion(work: Path, model: Any, model_name: str, feature_names: list[str]) -> None:
    """``model`` as a version of ``model_name`` with alias ``champion`` in
    ``work/mlflow.db``, logged as the train stage logs a member (not timed)."""
    import numpy as np

    from geoensemble.app.config import TrackingConfig
    from geoensemble.app.tracker import tracker_for

    os.environ["GEOENSEMBLE_ROOT"] = str(work)
    tracker = tracker_for(TrackingConfig(uri=f"sqlite:///{work}/mlflow.db"))
    exp = tracker.open()
    with tracker.parent_run(exp, run_name=model_name, params={}, tags={}) as parent:
        run = tracker.log_child_run(
            exp, parent, run_name="member-000", params={}, metrics={}, tags={}
        )
        version = tracker.log_model(
            run,
            model,
            feature_names=feature_names,
            example=np.ones((3, len(feature_names)), np.float32),
            model_name=model_name,
            tags={"ensemble_run_id": parent, "rank": "0"},
        )
    tracker.set_alias(model_name, "champion", version)


def run_process(v: Variant, *, timeout: float = 3600.0) -> Run:
    """Run ``v`` once, from process start to exit; its wall time, peak RSS and phases.

    Raises ``SystemExit`` naming the variant (with the end of its stderr) if it fails.
    """
    env = {**os.environ, **v.env}
    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        tempfile.NamedTemporaryFile("w+", suffix=".rss") as rss_file,
    ):
        argv = v.argv
        gnu_time = os.access(GNU_TIME, os.X_OK)
        if gnu_time:  # a small process forks the variant: its peak RSS is the variant's own
            argv = [GNU_TIME, "-f", "%M", "-o", rss_file.name, *argv]
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=v.cwd)
        deadline = t0 + timeout
        while True:  # wait4 gives this child's own rusage; poll so the timeout holds
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                proc.wait()
                raise SystemExit(f"variant {v.name} timed out after {timeout:.0f} s")
            time.sleep(0.002)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
        # ru_maxrss is in KiB on Linux (bytes on macOS); GNU time prints KiB
        rss = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
        if gnu_time:
            lines = Path(rss_file.name).read_text().split()
            rss = float(lines[-1]) / 1024 if lines and lines[-1].isdigit() else rss
    if proc.returncode:
        raise SystemExit(
            f"variant {v.name} failed (exit {proc.returncode}): {' '.join(v.argv)}\n"
            f"{stderr[-3000:]}"
        )
    text = stdout + stderr
    return Run(seconds, rss, parse_phases(text), stdout, stderr)


def parse_phases(text: str) -> dict[str, float]:
    """The last ``seconds by phase: {json}`` a process printed (empty if none)."""
    for line in reversed(text.splitlines()):
        if PHASES_MARK in line:
            try:
                return {k: float(x) for k, x in json.loads(line.split(PHASES_MARK, 1)[1]).items()}
            except ValueError:
                return {}
    return {}


def interleaved(
    variants: Sequence[Variant], *, repeats: int, timeout: float = 3600.0
) -> dict[str, list[Run]]:
    """Every variant ``repeats`` times, in rounds A B C, A B C, ...; runs by variant."""
    runs: dict[str, list[Run]] = {v.name: [] for v in variants}
    for r in range(repeats):
        for v in variants:
            run = run_process(v, timeout=timeout)
            runs[v.name].append(run)
            print(
                f"  round {r + 1}/{repeats} {v.name:<18} {run.seconds:7.2f} s "
                f"{run.peak_rss_mb:6.0f} MB",
                flush=True,
            )
    return runs


@dataclass
class Summary:
    """Medians of one variant's runs."""

    name: str
    seconds: float
    spread: tuple[float, float]
    peak_rss_mb: float
    phases: dict[str, float]
    n: int


def summarise(name: str, runs: Sequence[Run]) -> Summary:
    keys = list(dict.fromkeys(k for r in runs for k in r.phases))
    return Summary(
        name=name,
        seconds=statistics.median(r.seconds for r in runs),
        spread=(min(r.seconds for r in runs), max(r.seconds for r in runs)),
        peak_rss_mb=statistics.median(r.peak_rss_mb for r in runs),
        phases={k: statistics.median(r.phases.get(k, 0.0) for r in runs) for k in keys},
        n=len(runs),
    )


def machine() -> str:
    """Date, machine and load: figures mean nothing without them."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{time.strftime('%Y-%m-%d %H:%M')} on {platform.node() or 'this machine'}: "
        f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"load average {load} (other processes on the machine make every figure noisier)"
    )


def print_definitions(title: str, variants: Sequence[Variant]) -> None:
    print(f"== {title}")
    print(machine())
    print("Each variant is a separate process timed from start to exit (imports included),")
    print("run in interleaved rounds; figures are medians [min-max], peak RSS per process.")
    for v in variants:
        print(f"  {v.name}: {v.definition}")


def report(
    runs: Mapping[str, Sequence[Run]],
    *,
    ratios: Sequence[tuple[str, str, str]] = (),
) -> dict[str, Summary]:
    """Print medians per variant, their phases and the ratios ``(label, a, b)`` = a / b."""
    sums = {name: summarise(name, rs) for name, rs in runs.items()}
    for s in sums.values():
        print(
            f"  {s.name:<18} {s.seconds:7.2f} s [{s.spread[0]:.2f}-{s.spread[1]:.2f}]  "
            f"peak RSS {s.peak_rss_mb:6.0f} MB  (n={s.n})"
        )
        if s.phases:
            print("      phases: " + ", ".join(f"{k} {x:.2f} s" for k, x in s.phases.items()))
    for label, a, b in ratios:
        print(f"  ratio {label}: {sums[a].seconds / sums[b].seconds:.2f}x")
    return sums


def save(path: Path, sums: Mapping[str, Summary], **extra: object) -> None:
    """The medians as JSON (for comparing runs over time)."""
    path.write_text(
        json.dumps(
            {"machine": machine(), **extra, "variants": {k: vars(s) for k, s in sums.items()}},
            indent=2,
        )
    )
