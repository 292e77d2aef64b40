"""Which members the predict stage uses: registered versions, an ensemble's kept members,
the train report's champion or an external model file, and the NaN policy for each.

The config decides; :mod:`geoensemble.predict.models` holds the loaded :class:`LoadedMember`.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geoensemble.app.config import AppConfig, ExternalModelConfig
from geoensemble.app.keys import with_config_keys
from geoensemble.errors import ConfigError, FeatureMismatchError, InputFileError
from geoensemble.io.limits import read_json
from geoensemble.predict.models import LoadedMember, registered_member
from geoensemble.tracking import Tracker

log = logging.getLogger("geoensemble")


# predict.model_uri: the version the champion of <paths.reports>/train.json names (the pipeline)
TRAIN_REPORT = "train_report"


@with_config_keys
def external_member(ext: ExternalModelConfig, trusted_types: Sequence[str] = ()) -> LoadedMember:
    """A model trained elsewhere: a ``.skops`` file (built only from trusted types, like a
    registered model), or a pickle or joblib file, refused unless explicitly enabled.

    Raises
    ------
    ConfigError
        Without ``predict.external.allow_pickle=true`` (unpickling runs code from the file),
        or without the declared ``predict.external.feature_names``.
    InputFileError
        If the file is missing or cannot be unpickled.
    """
    assert ext.path is not None
    path = Path(ext.path)
    skops = path.suffix.lower() == ".skops"
    _check_external(ext, path, skops)
    if skops:
        from geoensemble.tracking.models import load_skops_bytes

        model = load_skops_bytes(
            path.read_bytes(), where=f"external model {path}", trusted_types=trusted_types
        )
    else:
        model = _unpickle(path)
    if not hasattr(model, "predict"):
        raise ConfigError(
            f"{path.name} holds a {type(model).__name__}, not a model with .predict(): "
            f"export the fitted scikit-learn estimator or pipeline itself"
        )
    return LoadedMember(
        label=ext.label or path.stem,
        model=model,
        feature_names=_external_feature_names(ext, model, path),
        uri=path.resolve().as_uri(),
        external=True,
    )


def _check_external(ext: ExternalModelConfig, path: Path, skops: bool) -> None:
    """Refuse, before reading it, a pickle not explicitly allowed, a model without declared
    inputs, and a missing file."""
    if not skops and not ext.allow_pickle:
        raise ConfigError(
            f"predict.external.path={str(path)!r} is a pickled model, and loading a pickle "
            f"runs code stored in the file. Save it with skops.io.dump as a .skops file "
            f"(loaded like a registered model, no pickle), or, only if you trust its source, set "
            f"predict.external.allow_pickle=true (and declare its inputs with "
            f"predict.external.feature_names)"
        )
    if not ext.feature_names:
        raise ConfigError(
            f"predict.external.feature_names is empty: declare the input features of "
            f"{path.name} in the order it was trained on, e.g. [B2, B3, B4, B5, ndvi]"
        )
    if not path.is_file():
        raise InputFileError(f"external model {path} does not exist: check predict.external.path")


def _external_feature_names(ext: ExternalModelConfig, model: Any, path: Path) -> list[str]:
    """The declared input features, checked against the declared fill values and the names
    the model was fitted with."""
    names = [str(n) for n in ext.feature_names]
    if ext.impute_stats:  # checked before any run or map is started
        from geoensemble.features.impute import declared_fill_values

        declared_fill_values(ext.impute_stats, names, "declared")
    fitted = getattr(model, "feature_names_in_", None)
    if fitted is not None and list(map(str, fitted)) != names:
        raise FeatureMismatchError(
            f"predict.external.feature_names {names} differ from the names {path.name} was "
            f"fitted with {list(map(str, fitted))}: declare those, in that order"
        )
    return names


def _unpickle(path: Path) -> Any:
    try:
        if path.suffix.lower() in {".joblib", ".jbl"}:
            import joblib

            return joblib.load(path)
        with open(path, "rb") as f:
            return pickle.load(f)  # the user opted in (allow_pickle)
    except (
        OSError,
        pickle.UnpicklingError,
        EOFError,
        AttributeError,
        ImportError,
        KeyError,  # joblib/pickle on bytes that are not a pickle at all
        ValueError,
        IndexError,
    ) as exc:
        raise InputFileError(
            f"cannot load external model {path}: {type(exc).__name__}: {exc}. Export it "
            f"again with pickle or joblib under the same scikit-learn version"
        ) from None


def nan_policy(
    members: list[LoadedMember],
    ds: Any,
    cfg: AppConfig,
    *,
    scene: str = "scene",
) -> tuple[list[LoadedMember], dict[str, str]]:
    """The members for one scene with the configured NaN policy, and tags recording it.

    Members trained here fill NaN with their own imputer (fitted on their training pixels).
    An external model gets a :class:`~geoensemble.features.impute.FillNaN` step in front,
    with the fill values of this scene's layers (``features.impute``, computed blockwise) or
    of ``predict.external.impute_stats``, as soon as ``features.nan_threshold`` lets a NaN
    reach it (see :mod:`geoensemble.features.impute`).
    """
    import dataclasses

    from geoensemble.features.impute import declared_fill_values, scene_fill_values, with_fill

    f = cfg.features
    tags = {"nan_threshold": str(f.nan_threshold)}
    if f.nan_threshold == 0 or not any(m.external for m in members):
        return members, tags  # no NaN reaches a model without its own imputer
    assert f.impute is not None  # validate() refuses nan_threshold > 0 without impute
    out = []
    for m in members:
        if not m.external:
            out.append(m)
            continue
        stats = cfg.predict.external.impute_stats
        if stats:  # validate() refuses it with impute=constant
            fill = declared_fill_values(stats, m.feature_names, f.impute)
        else:
            fill = scene_fill_values(
                ds,
                m.feature_names,
                f.impute,
                constant=f.impute_value,
                seed=cfg.seed,
                scene=scene,
            )
        log.info(
            "predict: %s: NaN features of external model %s filled with the %s %s %s",
            scene,
            m.label,
            fill.source,
            fill.strategy,
            fill.values,
        )
        tags.update(fill.tags(f.nan_threshold, m.label))
        values = [fill.values[n] for n in m.feature_names]
        out.append(dataclasses.replace(m, model=with_fill(m.model, values)))
    return out, tags


@with_config_keys
def resolve_members(cfg: AppConfig, tracker: Tracker) -> list[LoadedMember]:
    """Every model of this prediction, in a fixed order, without duplicates, from
    ``tracker``'s store (opened: :meth:`~geoensemble.tracking.Tracker.open`).

    The members are the union of ``predict.models``, the kept members of
    ``predict.ensemble`` and ``predict.external``; when none is set, ``predict.model_uri``
    (default ``models:/<tracking.model_name>@<predict.alias>``).
    """
    p = cfg.predict
    uris = list(p.models)
    ranked: list[str] = []  # an ensemble's kept members, best first
    if p.ensemble:
        assert tracker.experiment_id is not None
        parent = tracker.find_ensemble_run(p.ensemble, tracker.experiment_id)
        ranked = tracker.kept_member_uris(cfg.tracking.model_name, parent)
        uris += ranked
    trained = train_report_uris(cfg) if p.model_uri == TRAIN_REPORT else []
    if trained:
        uris[:0] = ranked = trained
    elif p.model_uri or (not uris and not p.external.path):
        uris.insert(0, p.model_uri or f"models:/{cfg.tracking.model_name}@{p.alias}")
    trusted = cfg.trust.types
    members = [registered_member(tracker, u, trusted_types=trusted) for u in dict.fromkeys(uris)]
    name_by_rank([m for m in members if m.uri in ranked], tracker, p.alias, cfg.tracking.model_name)
    if p.external.path:
        members.append(external_member(p.external, trusted))
    labels = [m.label for m in members]
    for i, m in enumerate(members):
        if labels.count(m.label) > 1:
            m.label = f"{m.label}_{i}"
    kinds = {m.kind for m in members}
    if len(kinds) > 1:
        raise ConfigError(
            f"the members mix model kinds {sorted(kinds)} "
            f"({', '.join(f'{m.label}: {m.kind}' for m in members)}): predict "
            f"classifiers, clusterers and regressors in separate runs"
        )
    return members


def name_by_rank(
    members: list[LoadedMember], tracker: Tracker, alias: str, model_name: str = "model"
) -> None:
    """Label an ensemble's kept members (best first) by role, not by registry version, so
    their maps keep their names from run to run: the best is ``<model>_<alias>`` only when
    ``@<alias>`` points at its version (else ``<model>_best``), the others ``<model>_rank2``,
    ``<model>_rank3``..."""
    if not members:
        return
    best = members[0]
    holder = tracker.alias_version(best.name, alias) if best.name else None
    registered = holder is not None and holder == best.version
    best.label = f"{best.name or model_name}_{alias if registered else 'best'}"
    for rank, m in enumerate(members[1:], start=2):
        m.label = f"{m.name or model_name}_rank{rank}"


def train_report_uris(cfg: AppConfig) -> list[str]:
    """The models (``models:/<name>/<version>`` when registered, else
    ``models:/<model id>``) of the champion ``<paths.reports>/train.json`` records, then of
    the other members it kept, best first.

    This is how the pipeline's predict stage (``predict.model_uri=train_report``) uses
    exactly the versions its train stage registered, wherever ``@champion`` points meanwhile:
    a map of every kept member, their aligned vote and agreement.

    Raises
    ------
    InputFileError
        If the report is missing, unreadable or records no champion version.
    ConfigError
        If it records another registered model than ``tracking.model_name``.
    """

    path = Path(cfg.paths.reports) / "train.json"
    rerun = "run the train stage first (dvc repro), or set predict.model_uri to a model"
    rewrite = (
        "restore it (git checkout / dvc checkout reports/train.json) or rerun the train stage "
        "(dvc repro --force train), or set predict.model_uri to a model"
    )
    try:
        report = read_json(path)
    except InputFileError:
        raise
    except FileNotFoundError:
        raise InputFileError(
            f"predict.model_uri=train_report reads {path}, which does not exist: {rerun}"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputFileError(
            f"predict.model_uri=train_report cannot read {path} ({type(exc).__name__}): it "
            f"is not the report the train stage wrote (changed or damaged since); {rewrite}"
        ) from None
    champion = report.get("champion") if isinstance(report, dict) else None
    name = report.get("model_name") if isinstance(report, dict) else None
    first = _report_uri(champion, name)
    if not isinstance(name, str) or first is None:
        raise InputFileError(
            f"{path} records no champion model (champion.uri or champion.version, "
            f"model_name): it is not the report the train stage wrote (changed since); "
            f"{rewrite}"
        )
    if name != cfg.tracking.model_name:
        raise ConfigError(
            f"{path} records model '{name}' but tracking.model_name={cfg.tracking.model_name!r}: "
            f"set tracking.model_name={name}, or rerun the train stage"
        )
    kept = report.get("kept") if isinstance(report.get("kept"), list) else []
    others = [_report_uri(k, name) for k in sorted(kept, key=lambda k: k.get("rank", 0))]
    return list(dict.fromkeys([first, *(u for u in others if u is not None)]))


def _report_uri(entry: Any, name: Any) -> str | None:
    """The model of a member entry of ``train.json``: its ``uri`` (a registered version or,
    not registered, its logged model ``models:/<model id>``), else its ``version`` of
    ``name``; ``None`` when it records neither."""
    if not isinstance(entry, dict):
        return None
    uri = entry.get("uri")
    if isinstance(uri, str) and uri.startswith("models:/"):
        return uri
    version = str(entry.get("version") or "")
    return f"models:/{name}/{version}" if version.isdigit() else None
