"""The command line passes each argument to Hydra as the shell gave it (issue 12).

A value may contain a space (``'tracking.experiment=my exp'``, a folder named ``my raw``);
only ``--overrides "a=1 b='x y'"``, how the MLproject entry points pass ``mlflow run -P
overrides=...``, is split like a shell would. A params file that is too big or expands
without end fails in seconds. Real subprocesses of the stage scripts.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import yaml

from tests.conftest import ROOT
from tests.test_bad_inputs_cli import outputs_in, stage, the_error_line


def composed(proc_stdout: str) -> dict:
    return dict(yaml.safe_load(proc_stdout))


def test_a_value_with_a_space_reaches_hydra_whole(tmp_path: Path) -> None:
    proc = stage("train", "tracking.experiment=my exp", "--cfg", "job", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert composed(proc.stdout)["tracking"]["experiment"] == "my exp"


def test_the_overrides_flag_is_split_like_a_shell_would(tmp_path: Path) -> None:
    text = "tracking.experiment='my exp' ensemble.size=2"
    proc = stage("train", "--overrides", text, "--cfg", "job", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    cfg = composed(proc.stdout)
    assert cfg["tracking"]["experiment"] == "my exp" and cfg["ensemble"]["size"] == 2

    empty = stage("train", "--overrides", "", "--cfg", "job", cwd=tmp_path)  # the default
    assert empty.returncode == 0, empty.stderr

    bad = stage("train", "--overrides", "tracking.experiment='my exp", cwd=tmp_path)
    assert bad.returncode == 2
    line = the_error_line(bad, "train")
    assert re.search(r"cannot split --overrides .*: No closing quotation; balance its quotes", line)
    assert not outputs_in(tmp_path)


def test_a_folder_with_a_space_in_its_name_is_read_and_written(tmp_path: Path) -> None:
    """The synthetic scene written into ``my raw/`` and ingested from there."""
    d = tmp_path / "my project"
    args = [
        "data.scene.width=64",
        "data.scene.height=48",
        f"paths.raw={d}/my raw",
        f"data.path={d}/my raw/scene",
        f"paths.stack={d}/my stack",
        f"paths.reports={d}/my reports",
    ]
    for name in ("scene", "ingest"):
        proc = stage(name, *args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    assert (d / "my stack").is_dir()
    assert sorted(p.name for p in (d / "my raw" / "scene").glob("*.TIF"))


def test_the_quoting_advice_of_a_parse_error_works(tmp_path: Path) -> None:
    """The message advises quoting; quoting as advised then composes."""
    bad = stage("train", "ensemble.size=[1,", cwd=tmp_path)
    assert bad.returncode == 2
    assert "quote values with spaces or brackets" in the_error_line(bad, "train")
    good = stage("train", "model.space.n_clusters=[4, 5]", "--cfg", "job", cwd=tmp_path)
    assert good.returncode == 0, good.stderr
    assert composed(good.stdout)["model"]["space"]["n_clusters"] == [4, 5]


def test_hostile_params_files_fail_in_seconds(tmp_path: Path) -> None:
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")
    with (tmp_path / "big.yaml").open("w") as f:
        f.write("seed: 1\ndata:\n  name: '" + "x" * 100_000_000 + "'\n")
    for name, match in [
        ("bomb.yaml", r"bomb\.yaml expands to over 100000 values through YAML anchors"),
        ("big.yaml", r"big\.yaml is 100\.0 MB, over the 1 MB a params file may hold"),
    ]:
        t0 = time.monotonic()
        proc = stage("train", "--params", name, cwd=tmp_path)
        assert time.monotonic() - t0 < 30
        assert proc.returncode == 2, proc.stderr
        assert re.search(match, the_error_line(proc, "train"))


def test_mlproject_passes_overrides_through_the_flag() -> None:
    spec = yaml.safe_load((ROOT / "MLproject").read_text())
    for name, entry in spec["entry_points"].items():
        assert entry["command"].endswith("--overrides {overrides}"), name
