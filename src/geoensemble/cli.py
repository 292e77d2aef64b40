"""Command-line wrappers around the stage functions.

``python pipelines/<stage>.py [hydra overrides]`` composes ``conf/`` with Hydra (multirun with
``-m``); ``python pipelines/<stage>.py --params params.yaml`` runs on an already composed file,
which is how ``dvc repro`` calls the stages. Errors that geoensemble raises on purpose print as
one clear line and exit with code 2; set ``GEOENSEMBLE_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import traceback
from pathlib import Path
from typing import Any

from geoensemble.config import AppConfig, load_params, validate
from geoensemble.errors import GeoEnsembleError

EXIT_ERROR = 2


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("geoensemble").setLevel(logging.INFO)
    for noisy in ("distributed", "alembic", "mlflow", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_stage(stage: str, cfg: AppConfig) -> Any:
    """Run one stage; on a geoensemble error print it and exit 2 (no traceback noise)."""
    from geoensemble.stages import STAGES

    try:
        return STAGES[stage](cfg)
    except GeoEnsembleError as exc:
        if os.environ.get("GEOENSEMBLE_DEBUG"):
            traceback.print_exc()
        print(f"geoensemble {stage}: error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_ERROR) from None


def conf_dir() -> Path:
    """``conf/`` of the project in the working directory, else of the source checkout."""
    here = Path.cwd() / "conf"
    return here if here.is_dir() else Path(__file__).resolve().parents[2] / "conf"


def _split_args(argv: list[str]) -> list[str]:
    # `mlflow run -P overrides="a=1 b=2"` passes one quoted argument: split it again.
    # An empty parameter (the entry points' default) adds no override.
    out: list[str] = []
    for a in argv:
        out.extend(shlex.split(a) if " " in a and not a.startswith("-") else [a])
    return [a for a in out if a]


def stage_main(stage: str, argv: list[str] | None = None) -> None:
    """Entry point of ``pipelines/<stage>.py`` and of ``geoensemble <stage>``."""
    args = _split_args(list(sys.argv[1:] if argv is None else argv))
    _setup_logging()
    if args[:1] == ["--params"]:
        if len(args) != 2:
            print(f"usage: {stage} --params params.yaml", file=sys.stderr)
            raise SystemExit(EXIT_ERROR)
        try:
            cfg = load_params(args[1])
        except GeoEnsembleError as exc:
            print(f"geoensemble {stage}: error: {exc}", file=sys.stderr)
            raise SystemExit(EXIT_ERROR) from None
        run_stage(stage, cfg)
        return

    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import DictConfig

    from geoensemble import sweep

    @hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
    def _main(raw: DictConfig) -> Any:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            # A failed sweep job raises (Hydra records it and runs the other jobs) instead
            # of exiting the whole sweep.
            try:
                return STAGES[stage](validate(raw))
            except GeoEnsembleError as exc:
                print(f"geoensemble {stage}: error: {exc}", file=sys.stderr)
                raise
        try:
            cfg = validate(raw)
        except GeoEnsembleError as exc:
            print(f"geoensemble {stage}: error: {exc}", file=sys.stderr)
            raise SystemExit(EXIT_ERROR) from None
        return run_stage(stage, cfg)

    from geoensemble.stages import STAGES

    sys.argv = [f"{stage}.py", *args]
    try:
        _main()
    finally:
        # Hydra skips on_multirun_end when a job failed: still write the summary.
        if sweep.active():
            sweep.finish(failed=True)


def main() -> None:
    """``geoensemble <stage> [--params FILE | overrides...]``."""
    from geoensemble.stages import STAGES

    if len(sys.argv) < 2 or sys.argv[1] not in STAGES:
        print(
            f"usage: geoensemble {{{','.join(STAGES)}}} [--params params.yaml | key=value ...]",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_ERROR)
    stage_main(sys.argv[1], sys.argv[2:])
