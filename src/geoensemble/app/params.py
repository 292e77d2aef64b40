"""Compose ``conf/`` into ``params.yaml`` exactly as DVC does on ``dvc exp run``.

``dvc repro`` uses the committed ``params.yaml`` as it is, so after editing ``conf/`` run
``python -m geoensemble.app.params`` to refresh it; a test checks that the two agree.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

# Hydra merges a dict override into the existing dict, so `model.space={}` alone would keep the
# model's whole space: it is rewritten to delete the space and add an empty one.
_WHOLE_SPACE = re.compile(r"^model\.space=(?P<value>.*)$", re.S)


def clear_overrides(overrides: list[str]) -> list[str]:
    """``overrides`` with ``model.space=<dict>`` made to replace the space (``~model.space``,
    then ``+model.space=<dict>``): Hydra would merge the dict into the model's own space, so
    ``{}`` would change nothing and a parameter the space does not list yet would be refused
    as an unknown key."""
    out: list[str] = []
    for o in overrides:
        m = _WHOLE_SPACE.match(o.strip())
        out += ["~model.space", f"+model.space={m['value']}"] if m else [o]
    return out


def conf_dir() -> Path:
    """``conf/`` of the project in the working directory, else of the source checkout."""
    here = Path.cwd() / "conf"
    return here if here.is_dir() else Path(__file__).resolve().parents[3] / "conf"


# The config file and overrides this process's stage runs on with --params (how dvc repro
# runs it); None when its config was composed from conf/ by Hydra.
_params_file: tuple[Path, tuple[str, ...]] | None = None


def params_file() -> tuple[Path, tuple[str, ...]] | None:
    """``(file, overrides)`` given with ``--params`` to this process's stage, else None."""
    return _params_file


@contextlib.contextmanager
def running_on(path: Path, overrides: tuple[str, ...]) -> Iterator[None]:
    """Record, for the stage run inside, the ``--params`` file and overrides it runs on."""
    global _params_file
    _params_file = path, overrides
    try:
        yield
    finally:
        _params_file = None  # a later stage of this process may compose its config


def compose(overrides: list[str] | None = None, *, config_dir: Path | None = None) -> Any:
    """The composed, resolved config (a DictConfig) for ``overrides``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str((config_dir or conf_dir()).resolve()), version_base=None):
        cfg = hydra_compose(config_name="config", overrides=clear_overrides(overrides or []))
    OmegaConf.resolve(cfg)
    return cfg


def render(overrides: list[str] | None = None) -> str:
    """``params.yaml`` text for ``overrides`` (same dumper as DVC)."""
    return OmegaConf.to_yaml(compose(overrides))


def main() -> None:
    out = Path("params.yaml")
    out.write_text(render(sys.argv[1:]), encoding="utf-8")
    print(f"wrote {out.resolve()}")


if __name__ == "__main__":
    main()
