"""DVC records a remote input by URL and ETag, and `dvc status` notices a changed scene."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.io.rangeserver import serve

DVC = shutil.which("dvc", path=str(Path(sys.executable).parent)) or shutil.which("dvc")


def _run(repo: Path, *args: str) -> str:
    done = subprocess.run(args, cwd=repo, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(DVC is None or shutil.which("git") is None, reason="needs dvc and git")
def test_dvc_status_notices_a_changed_remote_scene(tmp_path: Path) -> None:
    www, repo = tmp_path / "www", tmp_path / "repo"
    www.mkdir()
    repo.mkdir()
    (www / "red.tif").write_bytes(b"scene one" * 100)
    assert DVC is not None
    _run(repo, "git", "init", "-q")
    _run(repo, DVC, "init", "-q")
    with serve(www) as srv:
        url = f"{srv.url}/red.tif"
        stage = {"cmd": "echo ingest > stack.txt", "deps": [url], "outs": ["stack.txt"]}
        (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"ingest": stage}}))
        _run(repo, DVC, "repro", "-q")
        dep = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["ingest"]["deps"][0]
        assert dep["path"] == url and dep["checksum"].strip('"')  # the server's ETag
        assert "up to date" in _run(repo, DVC, "status")
        (www / "red.tif").write_bytes(b"scene two" * 100)  # the remote scene changes
        out = _run(repo, DVC, "status")
        assert "changed deps" in out and url in out
