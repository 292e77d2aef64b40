"""A password in the tracking URI reaches no log, file or message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, tool_env


def test_a_password_in_the_tracking_uri_is_written_nowhere(
    tiny_store: Path, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "pipelines" / "predict.py"),
            "tracking.uri=http://alice:s3cret@127.0.0.1:9/",  # nothing listens on port 9
            "tracking.timeout=2",
            f"paths.features={tiny_store}/features",
            f"predict.output_dir={tmp_path}/maps",
        ],
        cwd=tmp_path,
        env=tool_env(GEOENSEMBLE_LOG_DIR=str(logs)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    assert "http://alice:***@127.0.0.1:9/ does not answer" in r.stderr
    assert "s3cret" not in r.stdout + r.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "cli.log" for p in written)  # Hydra's log of the run exists
    assert not [p for p in written if b"s3cret" in p.read_bytes()]
