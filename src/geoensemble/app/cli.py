"""Command-line wrappers around the stage functions.

``python pipelines/<stage>.py [hydra overrides]`` composes ``conf/`` with Hydra (multirun with
``-m``); ``python pipelines/<stage>.py --params params.yaml`` runs on an already composed file,
which is how ``dvc repro`` calls the stages. Each argument reaches Hydra as the shell passed
it (a value may contain spaces); only ``--overrides "a=1 b=2"``, how the MLproject entry points
pass ``mlflow run -P overrides=...``, is split like a shell would.

What the user sees when something goes wrong:

- an error geoensemble raises on purpose (:class:`~geoensemble.errors.GeoEnsembleError`) prints
  one line ``geoensemble <stage>: error: <what, which file/key/value, how to fix>`` and exits
  with code 2;
- a bad command-line override (unknown key, group option that does not exist, syntax) prints
  one line naming the override and exits with code 1, Hydra's own code;
- anything else is a bug: one line saying so, exit code 1.

Set ``GEOENSEMBLE_DEBUG=1`` to get the traceback as well.
"""

from __future__ import annotations

import difflib
import logging
import os
import shlex
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from geoensemble.app.config import AppConfig
from geoensemble.app.keys import keyed
from geoensemble.app.params import conf_dir, running_on
from geoensemble.app.validate import load_params, validate
from geoensemble.errors import ConfigError, GeoEnsembleError

EXIT_ERROR = 2  # bad input the user can fix: a GeoEnsembleError or a bad override
EXIT_USAGE = 1  # a bug in geoensemble
DEBUG_VAR = "GEOENSEMBLE_DEBUG"


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("geoensemble").setLevel(logging.INFO)
    for noisy in ("distributed", "alembic", "mlflow", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def debug() -> bool:
    """True when ``GEOENSEMBLE_DEBUG`` asks for tracebacks."""
    return os.environ.get(DEBUG_VAR, "").strip().lower() not in {"", "0", "false", "no"}


def one_line(text: str) -> str:
    """Join a multi-line message into one line (the user reads one line per error)."""
    parts = [p.strip().rstrip(".;") for p in str(text).splitlines() if p.strip()]
    return "; ".join(p for p in parts if p)


def fail(stage: str, exc: BaseException) -> SystemExit:
    """Print ``exc`` as the one-line error of ``stage``; return the SystemExit to raise.

    A :class:`GeoEnsembleError` exits with code 2. Any other exception reaching the user is
    a bug in geoensemble: it is reported as such (exit code 1), with the traceback when
    ``GEOENSEMBLE_DEBUG=1``.
    """
    if debug():
        traceback.print_exception(exc)
    if _INTERRUPTED:
        # A library caught the interrupt and raised its own error instead (OmegaConf turns
        # it into a ConfigKeyError mid-copy): the user pressed Ctrl-C, and that is the line.
        print(f"geoensemble {stage}: interrupted by SIGINT (Ctrl-C)", file=sys.stderr)
        return SystemExit(EXIT_INTERRUPTED)
    if isinstance(exc, GeoEnsembleError):  # naming config keys, if a stage did not already
        print(f"geoensemble {stage}: error: {one_line(str(keyed(exc)))}", file=sys.stderr)
        return SystemExit(EXIT_ERROR)
    print(
        f"geoensemble {stage}: internal error: {type(exc).__name__}: {one_line(str(exc))}. "
        f"This is a bug in geoensemble: rerun with {DEBUG_VAR}=1 for the traceback and "
        f"report it",
        file=sys.stderr,
    )
    return SystemExit(EXIT_USAGE)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``dvc exp`` cancelling, a job scheduler) seen as an interruption, so
    that the stage unwinds and closes its MLflow runs as it does on Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated("SIGTERM")


# entry's codes, restated (entry, the scripts' first import, imports this module lazily)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM


def run_stage(stage: str, cfg: AppConfig) -> Any:
    """Run one stage; on any error print one line and exit (2 for a geoensemble error).

    Ctrl-C (SIGINT) and SIGTERM interrupt it: the runs it started are closed as KILLED and
    it exits with code 130 (143 for SIGTERM) after one line.
    """
    import signal
    import threading

    from geoensemble.app.stages import STAGES, check_dvc_outputs
    from geoensemble.app.tracker import bounded_mlflow

    try:
        check_dvc_outputs(cfg, stage)
    except Exception as exc:
        raise fail(stage, exc) from None
    old = None
    if threading.current_thread() is threading.main_thread():
        old = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with bounded_mlflow(cfg.tracking.timeout):
            return STAGES[stage](cfg)
    except KeyboardInterrupt as exc:
        how = str(exc) or "SIGINT (Ctrl-C)"
        print(f"geoensemble {stage}: interrupted by {how}", file=sys.stderr)
        raise SystemExit(
            EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
        ) from None
    except Exception as exc:
        raise fail(stage, exc) from None
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


OVERRIDES_FLAG = "--overrides"


def _split_args(argv: list[str]) -> list[str]:
    """The Hydra arguments of ``argv``, each exactly as the shell passed it.

    Only the value of ``--overrides "a=1 b='x y'"`` (how the MLproject entry points pass
    ``mlflow run -P overrides=...``, one string) is split, like a shell would; an empty value
    adds no override. Any other argument is kept whole, so ``'tracking.experiment=my exp'``
    reaches Hydra as one override with a space in its value.
    """
    out: list[str] = []
    it = iter(argv)
    for a in it:
        if a == OVERRIDES_FLAG:
            a = f"{OVERRIDES_FLAG}={next(it, '')}"
        if a.startswith(f"{OVERRIDES_FLAG}="):
            text = a.split("=", 1)[1]
            try:
                out.extend(shlex.split(text))
            except ValueError as exc:  # an unbalanced quote
                raise ConfigError(
                    f"cannot split {OVERRIDES_FLAG} {text!r} into overrides: {exc}; balance "
                    f"its quotes, e.g. overrides=\"tracking.experiment='my exp' ensemble.size=3\""
                ) from None
        else:
            out.append(a)
    return out


def _known_keys() -> list[str]:
    """Every key of the default composed config (for "did you mean" hints)."""
    from omegaconf import OmegaConf

    from geoensemble.app.config import flatten
    from geoensemble.app.params import compose

    try:
        plain = OmegaConf.to_container(compose([], config_dir=conf_dir()), resolve=False)
    except Exception:  # the hint is optional: never hide the real error behind another
        return []
    keys = flatten({str(k): v for k, v in plain.items()}) if isinstance(plain, dict) else {}
    out = set(keys)
    for k in keys:  # parents too: `ensemble.cv` is a key one may mistype
        parts = k.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return sorted(out)


def _override_of(key: str, args: list[str]) -> str:
    for a in args:
        if a.lstrip("+~").split("=", 1)[0] == key:
            return a
    return key


def hydra_message(exc: BaseException, args: list[str], stage: str) -> str:
    """One line for a Hydra composition or override error, naming the override and a fix."""
    import re

    from hydra.errors import MissingConfigException, OverrideParseException

    cfg_help = f"python pipelines/{stage}.py --cfg job prints the composed config"
    text = str(exc)
    if isinstance(exc, MissingConfigException) and exc.options is not None:
        m = re.search(r"Could not find '([^']+)'", text)
        missing = exc.missing_cfg_file or (m.group(1) if m else "?")
        group, _, option = missing.rpartition("/")
        hint = difflib.get_close_matches(option, list(exc.options), n=1)
        return (
            f"no option '{option}' in the config group '{group}' (conf/{group}/)"
            + (f": did you mean {group}={hint[0]}?" if hint else "")
            + f" Choose one of {', '.join(exc.options)}"
        )
    if isinstance(exc, OverrideParseException):
        return (
            f"cannot parse the overrides {' '.join(args)}: {one_line(text)} (write key=value, "
            f"quote values with spaces or brackets for the shell, no spaces inside [...] "
            f"or {{...}})"
        )
    m = re.match(r"Could not override '([^']+)'", text)
    if m and "not in struct" in str(exc.__cause__ or ""):
        key = m.group(1)
        hint = difflib.get_close_matches(key, _known_keys(), n=1)
        return (
            f"unknown config key '{key}' in the override '{_override_of(key, args)}'"
            + (f": did you mean '{hint[0]}'?" if hint else ":")
            + f" Check its spelling ({cfg_help}); a leading + adds a key only where the "
            f"config is free-form, e.g. +model.estimator.tol=0.001"
        )
    cause = f" ({one_line(str(exc.__cause__))})" if exc.__cause__ else ""
    return f"{one_line(text)}{cause}. Check the overrides ({cfg_help})"


class _HydraRaises:
    """Let Hydra raise its composition errors instead of printing them over several lines
    (Hydra prints them itself unless HYDRA_FULL_ERROR is set)."""

    def __enter__(self) -> None:
        self.old = os.environ.get("HYDRA_FULL_ERROR")
        os.environ["HYDRA_FULL_ERROR"] = "1"

    def __exit__(self, *exc: object) -> None:
        if self.old is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = self.old


def _hydra_errors() -> Iterator[type[BaseException]]:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    yield HydraException
    yield OmegaConfBaseException


def stage_main(stage: str, argv: list[str] | None = None) -> None:
    """Entry point of ``pipelines/<stage>.py`` and of ``geoensemble <stage>``: every line it
    or a library prints is redacted (:func:`~geoensemble.app.screen.redacted_screen`)."""
    from geoensemble.app.screen import redacted_screen

    def on_sigint(signum: int, frame: Any) -> None:
        _INTERRUPTED.append(signum)
        raise KeyboardInterrupt

    import signal
    import threading

    old, old_hook = None, sys.unraisablehook

    def unraisable(u: Any) -> None:
        # Ctrl-C raised where Python can only print it (see below): no traceback on screen
        if not (_INTERRUPTED and u.exc_type is KeyboardInterrupt):
            old_hook(u)

    if threading.current_thread() is threading.main_thread():
        old = signal.signal(signal.SIGINT, on_sigint)
        sys.unraisablehook = unraisable
    try:
        with redacted_screen():
            _stage_main(stage, argv)
        if _INTERRUPTED:
            # the interrupt was raised where Python only prints it (a garbage-collector
            # callback, a __del__) and the stage went on to its end: Ctrl-C still means stop
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        # Ctrl-C before or after the stage's own handling (composing the config, exiting)
        print(f"geoensemble {stage}: interrupted by SIGINT (Ctrl-C)", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    finally:
        _INTERRUPTED.clear()
        if old is not None:
            signal.signal(signal.SIGINT, old)
            sys.unraisablehook = old_hook


# Ctrl-C seen by this process while a stage runs (see stage_main and fail).
_INTERRUPTED: list[int] = []


def _stage_main(stage: str, argv: list[str] | None = None) -> None:
    try:
        args = _split_args(list(sys.argv[1:] if argv is None else argv))
    except ConfigError as exc:
        raise fail(stage, exc) from None
    if any(a in HELP_FLAGS for a in args):
        from geoensemble.app.usage import stage_help

        print(stage_help(stage))
        return
    _setup_logging()
    if stage == "promote":
        args = promote_shorthand(args)
    elif stage == "sample":
        args = shorthand(args, "validation_sample", SAMPLE_KEYS)
    elif stage == "registry":
        args = registry_shorthand(args)
    if args[:1] == ["--params"]:
        _run_on_params(stage, args)
    else:
        _run_with_hydra(stage, args)


def _run_on_params(stage: str, args: list[str]) -> None:
    """``stage`` on the config file given with ``--params`` and the overrides after it (how
    ``dvc repro`` runs it)."""
    if len(args) < 2:
        print(f"usage: {stage} --params params.yaml [key=value ...]", file=sys.stderr)
        raise SystemExit(EXIT_ERROR)
    try:
        cfg = load_params(args[1], args[2:])
    except Exception as exc:
        raise fail(stage, exc) from None
    with running_on(Path(args[1]), tuple(args[2:])):
        run_stage(stage, cfg)


def _run_with_hydra(stage: str, args: list[str]) -> None:
    """``stage`` on the config Hydra composes from ``conf/`` and the overrides ``args`` (a
    sweep with ``-m``)."""
    from geoensemble.app import sweep
    from geoensemble.app.params import clear_overrides

    call = _hydra_entry(stage)
    sys.argv = [f"{stage}.py", *clear_overrides(args)]
    multirun = any(a in ("-m", "--multirun") for a in args)
    # Sweeps keep Hydra's own reporting (a failed job must not end the others); a user who
    # set HYDRA_FULL_ERROR or GEOENSEMBLE_DEBUG gets Hydra's traceback as usual.
    own_errors = not (multirun or debug() or os.environ.get("HYDRA_FULL_ERROR"))
    try:
        if own_errors:
            _call_in_one_line(call, stage, args)
        else:
            call()
    finally:
        # Hydra skips on_multirun_end when a job failed: still write the summary.
        if sweep.active():
            sweep.finish(failed=True)


def _call_in_one_line(call: Callable[[], Any], stage: str, args: list[str]) -> None:
    """``call()``, a composition or override error reported in one line (exit code 2)."""
    with _HydraRaises():
        try:
            call()
        except tuple(_hydra_errors()) as exc:
            print(
                f"geoensemble {stage}: error: {hydra_message(exc, args, stage)}",
                file=sys.stderr,
            )
            raise SystemExit(EXIT_ERROR) from None
        except Exception as exc:
            raise fail(stage, exc) from None


def _hydra_entry(stage: str) -> Callable[[], Any]:
    """Hydra's entry point running ``stage`` on the composed config: once, or as one job of
    a sweep."""
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import DictConfig

    @hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
    def _main(raw: DictConfig) -> Any:
        from hydra.utils import get_original_cwd

        if os.getcwd() != get_original_cwd():
            # hydra.job.chdir=true moved the job into its run folder: the config's relative
            # paths (data/raw/scene, reports...) still mean the folder the user ran it from.
            os.chdir(get_original_cwd())
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            return _sweep_job(stage, raw)
        try:
            cfg = validate(raw)
        except Exception as exc:
            raise fail(stage, exc) from None
        return run_stage(stage, cfg)

    return _main


def _sweep_job(stage: str, raw: Any) -> Any:
    """One job of a sweep: a failed job raises (Hydra records it and runs the other jobs)
    instead of exiting the whole sweep."""
    from geoensemble.app.stages import STAGES, check_dvc_outputs
    from geoensemble.app.tracker import bounded_mlflow

    try:
        cfg = validate(raw)
        check_dvc_outputs(cfg, stage)
        with bounded_mlflow(cfg.tracking.timeout):
            return STAGES[stage](cfg)
    except GeoEnsembleError as exc:
        print(f"geoensemble {stage}: error: {one_line(str(keyed(exc)))}", file=sys.stderr)
        raise


HELP_FLAGS = ("-h", "--help")

# `geoensemble promote version=3`: the promote keys without their section.
PROMOTE_KEYS = ("version", "rule", "ensemble", "reason")
SAMPLE_KEYS = ("map", "out", "target_se", "users_accuracy", "min_per_class", "exclude_labels")


def shorthand(args: list[str], section: str, keys: tuple[str, ...]) -> list[str]:
    """``key=value`` for each of ``keys`` as ``<section>.key=value`` (other args as given)."""
    return [f"{section}.{a}" if a.partition("=")[0] in keys and "=" in a else a for a in args]


def promote_shorthand(args: list[str]) -> list[str]:
    """``version=3 rule=best ensemble=latest reason=...`` as ``promote.<key>=...``.

    The reason is free text (``reason="k=5 reads better"``): for Hydra it is quoted, so that
    ``=``, commas or brackets in it stay text.
    """
    hydra = args[:1] != ["--params"]
    out = []
    for a in args:
        key, sep, value = a.partition("=")
        if not sep or key not in PROMOTE_KEYS:
            out.append(a)
        elif key == "reason" and hydra and value[:1] not in ("'", '"'):
            out.append(f"promote.reason='{value.replace(chr(39), chr(92) + chr(39))}'")
        else:
            out.append(f"promote.{a}")
    return out


def registry_shorthand(args: list[str]) -> list[str]:
    """``list``, ``prune`` and ``--dry-run`` as ``registry.action=...``,
    ``registry.dry_run=true``."""
    words = {
        "list": "registry.action=list",
        "prune": "registry.action=prune",
        "--dry-run": "registry.dry_run=true",
    }
    return [words.get(a, a) for a in args]


def exit_code(exc: SystemExit) -> int:
    """The process exit code Python gives ``SystemExit(exc.code)`` (a text is printed)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def run_then_exit(stage: str, args: list[str] | None = None) -> None:
    """Run ``stage`` as a script and exit with its code (0, 1, 2 or 130)."""
    try:
        stage_main(stage, args)
    except SystemExit as exc:
        raise SystemExit(exit_code(exc)) from None


def _store(args: list[str]) -> None:
    """``geoensemble store copy --from URI --to URI`` (not a stage: no config)."""
    from geoensemble.app.store import store_main

    try:
        print(store_main(args))
    except GeoEnsembleError as e:
        raise fail("store", e) from None


def main() -> None:
    """``geoensemble <stage> [--params FILE | overrides...]``; ``--help`` lists the stages."""
    from geoensemble.app.usage import STAGE_HELP, main_help

    args = sys.argv[1:]
    if not args:
        print(main_help(), file=sys.stderr)
        raise SystemExit(EXIT_ERROR)
    if args[0] in HELP_FLAGS:
        print(main_help())
        return
    if args[0] == "store":
        _store(args[1:])
        return
    if args[0] not in STAGE_HELP:
        print(
            f"geoensemble: error: no stage {args[0]!r}: choose one of "
            f"{', '.join(STAGE_HELP)} (geoensemble --help describes them)",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_ERROR)
    run_then_exit(args[0], args[1:])
