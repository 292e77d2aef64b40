"""Validation of the application config: value ranges, names, trusted ``_target_`` specs,
the library's own rules for layers, features and models; and reading ``params.yaml``.

The schema itself (:mod:`geoensemble.app.config`) imports nothing of the library; the
checks here call into it (:mod:`geoensemble.trust`, :mod:`geoensemble.io.checks`, ...).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from operator import attrgetter
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from geoensemble.app.config import AppConfig, DataConfig, FeaturesConfig, ModelConfig
from geoensemble.app.keys import config_keys, keyed, with_config_keys
from geoensemble.errors import ConfigError
from geoensemble.io.checks import check_name

_MISSING = object()


def _at_least(lo: float) -> Callable[[Any], bool]:
    return lambda v: v >= lo


def _between(lo: float, hi: float) -> Callable[[Any], bool]:
    return lambda v: lo <= v <= hi


def _positive(v: Any) -> bool:
    return v > 0


# key -> (test of its value, what to use instead); checked once, when a stage starts.
RANGES: list[tuple[str, Callable[[Any], bool], str]] = [
    ("seed", _between(0, 2**32 - 1), "an integer between 0 and 2**32 - 1"),
    ("paths.dvc_outputs", lambda v: v in ("refuse", "allow"), "refuse or allow"),
    ("ensemble.size", _at_least(1), "an integer >= 1"),
    ("ensemble.generations", _at_least(1), "an integer >= 1"),
    ("ensemble.keep", _at_least(1), "an integer >= 1"),
    ("ensemble.patience", _at_least(1), "an integer >= 1"),
    ("ensemble.member_fraction", lambda v: 0.0 < v <= 1.0, "a fraction in (0, 1]"),
    ("ensemble.partial_fit_batches", _at_least(0), "an integer >= 0 (0: plain fit)"),
    ("ensemble.cv.folds", _at_least(2), "an integer >= 2"),
    ("ensemble.cv.block_size", _at_least(1), "an integer >= 1 (pixels)"),
    ("ensemble.cv.buffer", _at_least(0), "an integer >= 0 (pixels; 0: no buffer)"),
    ("ensemble.consensus.top", _at_least(2), "an integer >= 2"),
    ("ensemble.preview_size", _between(16, 4096), "an integer between 16 and 4096"),
    ("data.labels.buffer", _at_least(0), "a distance >= 0 in map units"),
    (
        "features.nan_threshold",
        _at_least(0),
        "an integer >= 0 (the number of NaN layers a pixel may have and still be used)",
    ),
    ("features.sample.size", _at_least(10), "an integer >= 10"),
    ("data.chunk_size", _between(16, 65536), "an integer between 16 and 65536"),
    ("predict.block_size", _between(16, 65536), "an integer between 16 and 65536"),
    ("compute.n_workers", _at_least(1), "an integer >= 1"),
    ("compute.threads_per_worker", _at_least(1), "an integer >= 1"),
    ("compute.timeout", _positive, "a number of seconds > 0"),
    ("compute.retries", _at_least(0), "an integer >= 0"),
    ("tracking.timeout", _positive, "a number of seconds > 0"),
    ("data.scene.width", _at_least(32), "an integer >= 32"),
    ("data.scene.height", _at_least(32), "an integer >= 32"),
    ("predict.threads", _at_least(0), "an integer >= 0"),
    (
        "predict.compress",
        lambda v: v.lower() in {"lzw", "deflate", "zstd", "none"},
        "one of lzw, deflate, zstd, none",
    ),
]


def _range_checks(cfg: AppConfig) -> None:
    for key, ok, allowed in RANGES:
        value = attrgetter(key)(cfg)
        if not ok(value):
            raise ConfigError(f"config key {key}={value!r} is out of range: use {allowed}")
    fitted = cfg.ensemble.size * cfg.ensemble.generations
    if fitted > cfg.limits.max_members:
        raise ConfigError(
            f"config key ensemble.size={cfg.ensemble.size} x ensemble.generations="
            f"{cfg.ensemble.generations} is {fitted} members, over the limit "
            f"limits.max_members={cfg.limits.max_members}: lower them, or raise "
            f"limits.max_members if you mean it"
        )
    if cfg.ensemble.keep > fitted:
        raise ConfigError(
            f"config key ensemble.keep={cfg.ensemble.keep!r} is out of range: use at most the "
            f"{fitted} members fitted (ensemble.size x ensemble.generations), or raise "
            f"ensemble.size"
        )
    _data_checks(cfg.data)
    _scene_crs_check(cfg.data.scene.crs)
    _features_checks(cfg.features)
    stats = cfg.predict.external.impute_stats
    if stats and cfg.features.impute == "constant":
        raise ConfigError(
            f"config key predict.external.impute_stats={stats!r} gives fill values but "
            f"features.impute=constant fills with features.impute_value: set "
            f"features.impute=median (or mean) to use the file, or "
            f"predict.external.impute_stats=null"
        )
    if not cfg.model.estimator.get("_target_"):
        raise ConfigError(
            "config key model.estimator._target_ is missing: name the estimator class, "
            "e.g. model.estimator._target_=sklearn.cluster.MiniBatchKMeans"
        )
    _target_checks(cfg)
    _name_checks(cfg)
    _model_checks(cfg.model, cfg.limits.max_clusters)
    _regularise_checks(cfg.predict.regularise)


def _regularise_checks(r: Any) -> None:
    """predict.regularise: radius and unit of 1 or more, connectivity 4 or 8, one unit."""
    from geoensemble.regularisation import check_settings

    if not r.enabled:
        return
    key = "config key predict.regularise."
    with config_keys():  # checked before any stage: name the config keys here
        check_settings(
            radius=r.majority_radius, min_pixels=r.min_pixels, connectivity=r.connectivity
        )
    if r.min_pixels is not None and r.min_hectares is not None:
        raise ConfigError(
            f"{key}min_pixels={r.min_pixels} and {key}min_hectares={r.min_hectares} both set "
            f"the mapping unit: set one, the other to null"
        )
    if r.min_hectares is not None and not r.min_hectares > 0:
        raise ConfigError(f"{key}min_hectares={r.min_hectares!r} is out of range: use a number > 0")
    if r.majority_radius is None and r.min_pixels is None and r.min_hectares is None:
        raise ConfigError(
            f"{key}enabled=true but nothing is asked: set {key}majority_radius or "
            f"min_pixels, or {key}enabled=false"
        )


@with_config_keys
def _target_checks(cfg: AppConfig) -> None:
    """Every ``_target_`` of the config against the one trust policy (nothing imported); its
    messages name the config keys (``trust.modules``...)."""
    from geoensemble import trust

    mods, params = cfg.trust.modules, cfg.trust.params
    trust.check_modules(mods)
    trust.check_types(cfg.trust.types)
    trust.check_spec(cfg.model.estimator, "model.estimator", modules=mods, params=params)
    trust.check_spec(cfg.model.space, "model.space", modules=mods, params=params)
    trust.check_space_names(cfg.model.space, "model.space", params)
    for name, spec in cfg.features.steps.items():
        trust.check_spec(spec, f"features.steps.{name}", modules=mods, params=params)
    for i, spec in enumerate(cfg.features.custom):
        if isinstance(spec, dict) and spec.get("_target_"):  # else: custom.py says what
            trust.check_custom(spec, f"features.custom[{i}]", modules=mods, params=params)


def _name_checks(cfg: AppConfig) -> None:
    names: list[tuple[str, Any]] = [
        ("data.name", cfg.data.name),
        ("tracking.model_name", cfg.tracking.model_name),
        ("predict.alias", cfg.predict.alias),
    ]
    if cfg.predict.external.label is not None:
        names.append(("predict.external.label", cfg.predict.external.label))
    names += [(f"predict.scenes[{i}].name", d.name) for i, d in enumerate(cfg.predict.scenes)]
    names += [(f"features.derived.{k}", k) for k in cfg.features.derived]
    for key, value in names:
        try:
            check_name(key, value)
        except ConfigError as exc:
            raise _config_key(exc) from None


def _config_key(exc: ConfigError) -> ConfigError:
    """A library check's error as validate's own messages read: ``config key data.x=...``
    (the library names its arguments; :func:`~geoensemble.app.keys.keyed` renders them)."""
    return ConfigError(f"config key {keyed(exc)}")


def _model_checks(m: ModelConfig, max_clusters: int) -> None:
    # The rule lives beside the search that applies it (one value for every member, or
    # searched in model.space, never both).
    from geoensemble.ensemble.precedence import check_precedence

    try:
        check_precedence(m.n_clusters, m.estimator, m.space)
    except ConfigError as exc:
        raise _config_key(exc) from None
    counts = [("model.n_clusters", m.n_clusters)]
    counts += [(f"model.estimator.{k}", m.estimator.get(k)) for k in CLUSTER_COUNTS]
    for k in CLUSTER_COUNTS:
        value = m.space.get(k)
        if isinstance(value, dict):  # {low, high}
            value = value.get("high")
        for v in value if isinstance(value, list) else [value]:
            counts.append((f"model.space.{k}", v))
    for key, value in counts:
        if isinstance(value, int) and not isinstance(value, bool) and value > max_clusters:
            raise ConfigError(
                f"config key {key}={value} is over the limit limits.max_clusters="
                f"{max_clusters} (a fit's time grows with the clusters: 20,000 took minutes "
                f"per member): lower it, or raise limits.max_clusters if you mean it"
            )


# Estimator arguments that set how many classes a map gets (K-Means, mixtures).
CLUSTER_COUNTS = ("n_clusters", "n_components")


def _features_checks(f: FeaturesConfig) -> None:
    from geoensemble.features.indices import SENSORS
    from geoensemble.features.nanpolicy import check_nan_policy

    if f.sensor not in SENSORS:
        raise ConfigError(
            f"config key features.sensor={f.sensor!r} is unknown: use one of {list(SENSORS)}"
        )
    with config_keys():  # checked before any stage: name the config keys here
        check_nan_policy(f.nan_threshold, f.impute)
    if f.false_colour and len(f.false_colour) != 3:
        raise ConfigError(
            f"config key features.false_colour={f.false_colour} must name exactly three "
            f"features (red, green, blue), or be empty"
        )


def _scene_crs_check(crs: str) -> None:
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        CRS.from_user_input(crs)
    except CRSError:
        raise ConfigError(
            f"config key data.scene.crs={crs!r} is not a CRS that PROJ knows: use an EPSG "
            f"code such as EPSG:32613 (UTM 13N)"
        ) from None


def _data_checks(d: DataConfig) -> None:
    # Lives in io/ so that the format list and the checks stay beside the readers.
    from geoensemble.app.settings import read_spec_of
    from geoensemble.io.checks import check_data_config

    try:
        check_data_config(read_spec_of(d))
    except ConfigError as exc:
        raise _config_key(exc) from None


def default_model_name(data_name: str, family: str) -> str:
    """The registered model of one data set and model family: ``<data.name>-<model.name>``
    (e.g. ``synthetic-kmeans``), what ``tracking.model_name`` means when it is empty."""
    return f"{data_name}-{family}"


def validate(cfg: DictConfig | dict[str, Any]) -> AppConfig:
    """Check a composed config against the schema and return it as typed dataclasses.

    Parameters
    ----------
    cfg
        The composed config (from Hydra, from ``params.yaml`` or a plain dict).

    Returns
    -------
    AppConfig
        The validated config with interpolations resolved.

    Raises
    ------
    ConfigError
        Naming the full key, the value and the allowed values or type.
    """
    try:
        src = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
        plain = OmegaConf.to_container(src, resolve=True)
        if isinstance(plain, dict):
            plain.pop("hydra", None)
        merged = OmegaConf.merge(OmegaConf.structured(AppConfig), OmegaConf.create(plain))
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or "?"
        msg = str(exc).splitlines()[0]
        raise ConfigError(
            f"invalid config at key '{key}': {msg}. Check the spelling and type of that key "
            f"against conf/ (python pipelines/train.py --cfg job prints the composed config)"
        ) from None
    assert isinstance(obj, AppConfig)  # to_object of a structured AppConfig
    if not obj.tracking.model_name:
        obj.tracking.model_name = default_model_name(obj.data.name, obj.model.name)
    _range_checks(obj)
    return obj


# A composed params.yaml holds a few hundred keys in ~10 KB; these bounds are far above any
# real one and keep a hostile or broken file (a 100 MB value, a "billion laughs" of YAML
# anchors and aliases) from hanging a stage for minutes.
MAX_PARAMS_BYTES = 1_000_000
MAX_PARAMS_NODES = 100_000


def _expanded_nodes(node: yaml.Node, memo: dict[int, int], active: set[int]) -> int:
    """How many nodes ``node`` becomes once its aliases are expanded (without expanding)."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:  # an alias inside its own anchor: a structure without end
        return MAX_PARAMS_NODES + 1
    active.add(key)
    if isinstance(node, yaml.SequenceNode):
        children: list[yaml.Node] = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    else:
        children = []
    total = 1
    for child in children:
        total += _expanded_nodes(child, memo, active)
        if total > MAX_PARAMS_NODES:
            break
    active.discard(key)
    memo[key] = total
    return total


_INTERPOLATION = re.compile(r"\$\{([^${}:]+)\}")


def _resolved_size(data: Any) -> int:
    """Roughly how big ``data`` becomes once its ``${key}`` interpolations are resolved
    (characters of strings plus one per value), without resolving them.

    A chain of keys each repeating the previous one a few times grows exponentially (the
    interpolation twin of a YAML alias bomb); resolving it would hang the stage.
    """
    memo: dict[tuple[Any, ...], int] = {}
    active: set[tuple[Any, ...]] = set()

    def lookup(path: tuple[Any, ...]) -> Any:
        node = data
        for part in path:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and str(part).isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise KeyError(part)
        return node

    def size(path: tuple[Any, ...]) -> int:
        if path in memo:
            return memo[path]
        if path in active:  # a cycle: OmegaConf reports it itself
            return 0
        active.add(path)
        value = lookup(path)
        total = 1
        if isinstance(value, dict):
            items: list[Any] = list(value)
        elif isinstance(value, list):
            items = list(range(len(value)))
        else:
            items = []
        for k in items:
            total += size((*path, k))
            if total > MAX_PARAMS_BYTES:
                break
        if isinstance(value, str):
            total += len(value)
            for ref in _INTERPOLATION.findall(value):
                dots = len(ref) - len(ref.lstrip("."))
                base = path[: len(path) - dots] if dots else ()
                target = (*base, *ref.lstrip(".").replace("[", ".").replace("]", "").split("."))
                try:
                    total += size(target)
                except KeyError:
                    continue  # a missing key: validate() names it
                if total > MAX_PARAMS_BYTES:
                    break
        active.discard(path)
        memo[path] = total
        return total

    return size(())


class _ParamsLoader(yaml.SafeLoader):
    """YAML's safe loader reading ``1e-3`` as a float, as OmegaConf and YAML 1.2 do (YAML 1.1
    wants ``1.0e-3``)."""


_ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _read_params_yaml(p: Path) -> Any:
    """The plain data of the YAML file ``p``, read with OmegaConf's loader within bounds.

    Raises
    ------
    ConfigError
        If the file is over :data:`MAX_PARAMS_BYTES`, or its anchors and aliases expand to
        over :data:`MAX_PARAMS_NODES` values (checked on the parsed graph, before expanding).
    """
    regenerate = "regenerate params.yaml with python -m geoensemble.app.params"
    size = p.stat().st_size
    if size > MAX_PARAMS_BYTES:
        raise ConfigError(
            f"config file {p} is {size / 1e6:.1f} MB, over the {MAX_PARAMS_BYTES / 1e6:g} MB "
            f"a params file may hold (a composed one is ~10 KB): give the path of the file "
            f"holding a value rather than the value itself, or {regenerate}"
        )
    with p.open("rb") as f:
        text = f.read(MAX_PARAMS_BYTES + 1)  # the file may grow after stat
    loader = _ParamsLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_nodes(node, {}, set()) > MAX_PARAMS_NODES:
            raise ConfigError(
                f"config file {p} expands to over {MAX_PARAMS_NODES} values through YAML "
                f"anchors and aliases (&name / *name): write the values out, or {regenerate}"
            )
        data = loader.construct_document(node)
        if _resolved_size(data) > MAX_PARAMS_BYTES:
            raise ConfigError(
                f"config file {p} grows to over {MAX_PARAMS_BYTES / 1e6:g} MB once its "
                f"${{...}} interpolations are resolved: write the values out, or {regenerate}"
            )
        return data
    except RecursionError:
        raise ConfigError(
            f"config file {p} nests its values too deeply to read: {regenerate}"
        ) from None
    finally:
        loader.dispose()


def load_params(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> AppConfig:
    """Read and validate a composed config file such as ``params.yaml``.

    The file is bounded (:data:`MAX_PARAMS_BYTES`, and :data:`MAX_PARAMS_NODES` values once
    its YAML aliases are expanded) so that a broken or hostile file fails at once.
    ``overrides`` (``key=value``, keys the file holds) change single values, e.g. how the
    pipeline's predict stage is told to load the version its train stage recorded.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"config file {p} does not exist: run from the project root or "
            f"pass --params with the path to params.yaml"
        )
    try:
        obj = _read_params_yaml(p)
        loaded = OmegaConf.create(obj) if isinstance(obj, dict | list) and obj else obj
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"config file {p} is not readable YAML: {what}{where}. Fix the file, or "
            f"regenerate params.yaml with python -m geoensemble.app.params"
        ) from None
    if not isinstance(loaded, DictConfig) or not loaded:
        what = "empty" if not loaded else "a list" if isinstance(loaded, ListConfig) else "a value"
        raise ConfigError(
            f"config file {p} does not hold a mapping of config keys (it is {what}): "
            f"regenerate it with python -m geoensemble.app.params"
        )
    missing = [k for k in REQUIRED_SECTIONS if k not in loaded]
    if missing:
        raise ConfigError(
            f"config file {p} has no {', '.join(missing)} section: a params file holds the "
            f"whole composed config, and running on defaults instead would not be what the "
            f"file says; regenerate it with python -m geoensemble.app.params"
        )
    return validate(_with_overrides(loaded, overrides, p))


# Sections a params file must hold (trust and limits may be left out: their defaults are the
# safe ones).
REQUIRED_SECTIONS = ("data", "features", "model", "ensemble", "predict", "tracking", "compute")


def _with_overrides(cfg: DictConfig, overrides: Sequence[str], path: Path) -> DictConfig:
    """``cfg`` with plain ``key=value`` overrides of keys it already holds."""
    for o in overrides:
        key, sep, value = o.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", key):
            raise ConfigError(
                f"cannot apply {o!r} to the config file {path}: after --params only plain "
                f"key=value overrides of keys the file holds are allowed (no groups, no +/~), "
                f"e.g. predict.model_uri=train_report"
            )
        if OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
            raise ConfigError(
                f"cannot apply {o!r}: the config file {path} has no key {key}; check its "
                f"spelling (python pipelines/train.py --cfg job prints every key)"
            )
        merged = OmegaConf.merge(cfg, OmegaConf.from_dotlist([f"{key}={value}"]))
        assert isinstance(merged, DictConfig)
        cfg = merged
    return cfg
