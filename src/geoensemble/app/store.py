"""``geoensemble store copy --from URI --to URI``: move the tracking store (e.g. the project's
``sqlite:///mlflow.db`` to a team's ``mlflow server`` or PostgreSQL database) with everything
in it, through MLflow's public client APIs (see :mod:`geoensemble.tracking.copy`)."""

from __future__ import annotations

import argparse

from geoensemble.errors import ConfigError, GeoEnsembleError

USAGE = "geoensemble store copy --from SOURCE_URI --to TARGET_URI"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="geoensemble store",
        usage=USAGE,
        description="Copy every experiment, run, logged model, registered model, version and "
        "alias of one MLflow store into another, empty one (new run ids; each copied run is "
        "tagged geoensemble.copied_from=<its source id>).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("copy", usage=USAGE)
    c.add_argument("--from", dest="source", required=True, help="e.g. sqlite:///mlflow.db")
    c.add_argument("--to", dest="target", required=True, help="e.g. http://mlflow.team:5000")
    return p


def store_main(argv: list[str]) -> str:
    """Run ``geoensemble store ...``; return the line to print.

    Raises
    ------
    GeoEnsembleError
        A wrong URI or a target that is not empty (one line for the user).
    """
    from geoensemble.tracking.copy import copy_store

    args = _parser().parse_args(argv)
    for flag, uri in (("--from", args.source), ("--to", args.target)):
        if "://" not in uri:
            raise ConfigError(
                f"{flag} {uri!r} is not a store URI: give sqlite:///<path>, "
                "postgresql+psycopg2://<user>@<host>/<db> or http://<server>:<port>"
            )
    try:
        done = copy_store(args.source, args.target)
    except GeoEnsembleError:
        raise
    except Exception as e:  # MLflow's own errors: one line naming the store
        raise ConfigError(f"cannot copy {args.source} to {args.target}: {e}") from e
    return (
        f"geoensemble store: copied {done.experiments} experiment(s), {len(done.runs)} run(s), "
        f"{len(done.models)} logged model(s), {done.versions} model version(s) and "
        f"{done.aliases} alias(es) from {args.source} to {args.target}"
    )
