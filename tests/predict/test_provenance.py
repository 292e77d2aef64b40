"""A map's ``dvc_inputs`` tag copies DVC's hash of an input only while the file still has it."""

from __future__ import annotations

from pathlib import Path

import yaml

from geoensemble.app.provenance import dvc_hashes
from tests.conftest import run, tool


def test_a_lock_entry_is_copied_only_while_the_file_matches_it(tmp_path: Path) -> None:
    run(["git", "init", "-q"], tmp_path)
    run([tool("dvc"), "init", "-q"], tmp_path)
    (tmp_path / "dvc.yaml").write_text(
        yaml.safe_dump({"stages": {"make": {"cmd": "echo hello > a.txt", "outs": ["a.txt"]}}})
    )
    run([tool("dvc"), "repro", "-q"], tmp_path)
    lock = yaml.safe_load((tmp_path / "dvc.lock").read_text())
    md5 = lock["stages"]["make"]["outs"][0]["md5"]
    assert dvc_hashes(["a.txt"], tmp_path) == {"a.txt": md5}
    (tmp_path / "a.txt").write_text("changed behind DVC's back\n")
    assert dvc_hashes(["a.txt"], tmp_path) == {}  # the lock no longer describes the file
    assert dvc_hashes(["other.txt"], tmp_path) == {}
