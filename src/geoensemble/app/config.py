"""The config schema (structured configs) and its validation.

The YAML tree in ``conf/`` stays free of schema references so that DVC can compose it into
``params.yaml`` on its own; the schema below is applied once, when a stage starts, by
:func:`validate`. Errors name the full key, the bad value and what is allowed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from operator import attrgetter
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from geoensemble.errors import ConfigError


class Align(StrEnum):
    strict = "strict"
    reproject = "reproject"


class ModelKind(StrEnum):
    cluster = "cluster"
    classifier = "classifier"
    regressor = "regressor"


class Direction(StrEnum):
    minimize = "minimize"
    maximize = "maximize"


class LabelTarget(StrEnum):
    classes = "classes"
    value = "value"


class SampleMode(StrEnum):
    shared = "shared"
    per_member = "per_member"


@dataclass
class LayerSpecConfig:
    """How to find one layer and what to call it (see :mod:`geoensemble.io.layers`)."""

    name: str = "???"
    file: str | None = None  # regular expression on the file name
    variable: str | None = None  # NetCDF/HDF variable or subdataset (regular expression)
    meta_key: str | None = None  # metadata key whose value must match meta_value
    meta_value: str | None = None  # regular expression on that metadata value
    band: int = 1  # band (GeoTiff) or index along the extra dimension (NetCDF/HDF), from 1
    nodata: list[float] = field(default_factory=list)  # extra no-data values
    scale: float = 1.0  # value = raw * scale + offset (after the file's own scale/offset)
    offset: float = 0.0
    categorical: bool = False  # resampled with nearest neighbour only
    window: list[int] | None = None  # [row_off, col_off, height, width] in source pixels
    bbox: list[float] | None = None  # [xmin, ymin, xmax, ymax] in the layer's CRS
    out_shape: list[int] | None = None  # [rows, cols] to resample to on read (buf_ysize/xsize)
    resolution: list[float] | None = None  # [xres, yres] (or [res]) to resample to on read
    resampling: str | None = None  # for out_shape/resolution/reproject; default data.resampling


@dataclass
class SceneConfig:
    width: int = 800
    height: int = 800
    pixel_size: float = 30.0
    crs: str = "EPSG:32613"
    seed: int = 42
    n_points: int = 600


@dataclass
class LabelsConfig:
    """Training labels: a label raster or a vector file (see :mod:`geoensemble.io.labels`)."""

    path: str | None = None  # label raster (.tif) or vector file (.gpkg, .shp, .geojson)
    attribute: str = "class_name"  # the vector attribute holding the class (or the value)
    code_attribute: str | None = None  # integer codes from this attribute (else names sorted)
    target: LabelTarget = LabelTarget.classes  # classes (codes) or value (regression)
    layer: str | None = None  # layer of a multi-layer vector file (GeoPackage)
    buffer: float = 0.0  # map units around points, so a point labels a small disc
    all_touched: bool = False  # rasterize every pixel a polygon touches


class SamplingDesign(StrEnum):
    random = "random"
    stratified = "stratified"


@dataclass
class ValidationConfig:
    """A validation sample for design-based accuracy and area estimates (Olofsson et al.
    2014): labels never used in training, drawn at random over the map (``random``) or at
    random within each class of the assessed map (``stratified``). See README "Accuracy"."""

    path: str | None = None  # points/polygons (vector) or a label raster; null: no estimates
    attribute: str = "class_name"  # the vector attribute holding the class name
    code_attribute: str | None = None
    layer: str | None = None
    design: SamplingDesign = SamplingDesign.random


@dataclass
class TargetGridConfig:
    """An explicit grid for ``align: reproject`` (unset parts come from the reference layer)."""

    crs: str | None = None
    resolution: list[float] | None = None  # [xres, yres] or [res], in target CRS units
    bounds: list[float] | None = None  # [xmin, ymin, xmax, ymax] in the target CRS


@dataclass
class DataConfig:
    name: str = "custom"
    format: str = "auto"
    path: str = "???"
    pattern: str = "*.tif"
    layers: list[LayerSpecConfig] = field(default_factory=list)
    align: Align = Align.strict
    reference: str | None = None
    target: TargetGridConfig = field(default_factory=TargetGridConfig)
    resampling: str = "bilinear"
    chunk_size: int = 1024
    crs: str | None = None  # CRS for sources that carry none (HDF4/HDF5 without metadata)
    geotransform: list[float] | None = None  # GDAL order, for sources without geolocation
    truth: str | None = None
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    scene: SceneConfig = field(default_factory=SceneConfig)


@dataclass
class SampleConfig:
    """The training sample: at most ``size`` valid pixels, seeded, optionally class-balanced."""

    size: int = 200_000
    stratify: bool = False  # with labels: an equal share per class (as far as classes allow)


@dataclass
class FeaturesConfig:
    """Raster-level features, the NaN policy and the learned steps (see README "Features")."""

    name: str = "custom"
    sensor: str = "landsat8"  # one of geoensemble.features.indices.SENSORS
    bands: list[str] = field(default_factory=list)  # layer names or roles; ["*"] = all
    indices: list[str] = field(default_factory=list)  # ndvi, ndwi, ndsi, nbr
    derived: dict[str, Any] = field(default_factory=dict)  # name: [a, b] or {op, a, b}
    custom: list[Any] = field(default_factory=list)  # [{_target_: fn, **kwargs}]
    nan_threshold: int = 0  # pixels with more NaN features than this are dropped
    impute: str | None = None  # median | mean | constant, fitted on training pixels
    impute_value: float = 0.0  # the fill of impute: constant
    steps: dict[str, Any] = field(default_factory=dict)  # learned steps by _target_
    sample: SampleConfig = field(default_factory=SampleConfig)
    quicklooks: list[str] = field(default_factory=list)
    false_colour: list[str] = field(default_factory=list)


@dataclass
class ModelConfig:
    name: str = "???"
    kind: ModelKind = ModelKind.cluster
    n_clusters: int | None = None
    estimator: dict[str, Any] = field(default_factory=dict)
    space: dict[str, Any] = field(default_factory=dict)


@dataclass
class ObjectiveConfig:
    """One more selection metric for a multi-objective (NSGA-II) search."""

    metric: str = "???"
    direction: Direction = Direction.minimize


@dataclass
class ConsensusConfig:
    """An extra K-Means member from the pooled centroids of the best members (elm)."""

    enabled: bool = False
    top: int = 3  # how many of the best members pool their centroids
    n_clusters: int | None = None  # default: the best member's


@dataclass
class CVConfig:
    """Spatial block cross-validation of supervised members."""

    folds: int = 5
    block_size: int = 32  # pixels per side of a square block; a block is never split
    buffer: int = 0  # training pixels this close (px, Chebyshev) to a test pixel are left out


@dataclass
class EnsembleConfig:
    size: int = 4
    generations: int = 1
    keep: int = 1
    metric: str = "aic"
    direction: Direction = Direction.minimize
    objectives: list[ObjectiveConfig] = field(default_factory=list)
    patience: int = 2
    sample: SampleMode = SampleMode.shared
    member_fraction: float = 0.5
    partial_fit_batches: int = 0
    consensus: ConsensusConfig = field(default_factory=ConsensusConfig)
    cv: CVConfig = field(default_factory=CVConfig)
    previews: bool = True
    preview_size: int = 200


class PredictScheduler(StrEnum):
    threads = "threads"
    distributed = "distributed"


@dataclass
class ExternalModelConfig:
    """A scikit-learn-compatible model file trained elsewhere (pickle or joblib)."""

    path: str | None = None
    allow_pickle: bool = False  # loading a pickle runs code from the file: opt in explicitly
    feature_names: list[str] = field(default_factory=list)  # its inputs, in its order
    label: str | None = None  # name in output file names (default: the file's stem)
    # JSON {feature: fill value} from a declared sample; default: the scene's statistic
    # (features.impute) of each layer
    impute_stats: str | None = None


@dataclass
class PredictOutputsConfig:
    """Which maps to write besides each member's class map."""

    members: bool = True  # one map per member when there are several
    vote: bool = True  # majority vote of the members
    agreement: bool = True  # share of members voting for the winner (uint8 percent)
    probabilities: bool = False  # mean class probabilities, one uint8-percent band per class
    max_probability: bool = True  # the highest mean class probability (uint8 percent)


@dataclass
class PredictConfig:
    """Which models predict which scenes, and what is written (see README "Prediction")."""

    model_uri: str | None = None  # default: models:/<tracking.model_name>@<alias>
    alias: str = "champion"
    models: list[str] = field(default_factory=list)  # more model URIs (members)
    ensemble: str | None = None  # every kept member: parent run id, key:value tag, or latest
    external: ExternalModelConfig = field(default_factory=ExternalModelConfig)
    scenes: list[DataConfig] = field(default_factory=list)  # default: the training features
    outputs: PredictOutputsConfig = field(default_factory=PredictOutputsConfig)
    output_dir: str = "outputs/maps"
    block_size: int = 1024  # block edge in pixels; a multiple of the 512-px tiles
    scheduler: PredictScheduler = PredictScheduler.threads
    threads: int = 0  # 0 = one per core
    compress: str = "lzw"
    overviews: bool = True  # COG overviews (x2, x4, ... down to one tile); false: none
    quicklook: bool = True
    progress: bool = True
    overwrite: bool = False  # replace maps outside DVC-managed outputs


class PromoteRule(StrEnum):
    best = "best"


@dataclass
class PromoteConfig:
    """``geoensemble promote``: which registered version becomes the champion, and why.

    Exactly one of ``version`` and ``rule`` is set; the alias moved is ``predict.alias``.
    """

    version: int | None = None  # a version of tracking.model_name, e.g. 3
    rule: PromoteRule | None = None  # best: the best comparable candidate of `ensemble`
    ensemble: str | None = None  # for rule=best: parent run id, latest, or key:value tag
    reason: str | None = None  # recorded on the version (tag promotion_reason)


@dataclass
class TrackingConfig:
    uri: str | None = None
    experiment: str = "geoensemble"
    model_name: str = "geoensemble"
    artifact_root: str = "mlartifacts"
    timeout: float = 10.0  # seconds to wait for a tracking server before giving up


@dataclass
class ComputeConfig:
    """A LocalCluster (``address`` null) or an existing dask scheduler (see README)."""

    address: str | None = None  # tcp://host:8786 of a running `dask scheduler`
    n_workers: int = 2  # LocalCluster only
    threads_per_worker: int = 1  # LocalCluster only
    processes: bool = True  # LocalCluster only: worker processes (true) or threads
    memory_limit: str = "auto"  # LocalCluster only, per worker
    timeout: float = 30.0  # seconds to wait for local workers, or a scheduler and a worker
    retries: int = 2  # times a member's task is rerun after its worker died


@dataclass
class TrustConfig:
    """Code and model types trusted beyond geoensemble's own (see :mod:`geoensemble.trust`).

    A params file names code that runs: ``_target_`` entries may only name scikit-learn
    classes and geoensemble's own functions and transformers, or a module listed here.
    """

    modules: list[str] = field(default_factory=list)  # modules a _target_ may name (yours)
    types: list[str] = field(default_factory=list)  # more types a registered model may hold


@dataclass
class PathsConfig:
    raw: str = "data/raw"
    stack: str = "data/stack"
    features: str = "data/features"
    labels: str = "data/labels"
    reports: str = "reports"
    # A stage run outside `dvc repro` into an output of dvc.yaml: refuse | allow
    dvc_outputs: str = "refuse"


@dataclass
class AppConfig:
    """The whole composed configuration (``conf/config.yaml`` and its groups)."""

    seed: int = 42
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    promote: PromoteConfig = field(default_factory=PromoteConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    trust: TrustConfig = field(default_factory=TrustConfig)


def register_configs() -> None:
    """Register the schema in Hydra's ConfigStore (as ``schema``) for tools that want it."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="schema", node=AppConfig)


def _at_least(lo: float) -> Callable[[Any], bool]:
    return lambda v: v >= lo


def _between(lo: float, hi: float) -> Callable[[Any], bool]:
    return lambda v: lo <= v <= hi


def _positive(v: Any) -> bool:
    return v > 0


# key -> (test of its value, what to use instead); checked once, when a stage starts.
RANGES: list[tuple[str, Callable[[Any], bool], str]] = [
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
    _model_checks(cfg.model)


def _target_checks(cfg: AppConfig) -> None:
    """Every ``_target_`` of the config against the one trust policy (nothing imported)."""
    from geoensemble import trust

    mods = cfg.trust.modules
    trust.check_modules(mods)
    trust.check_types(cfg.trust.types)
    trust.check_spec(cfg.model.estimator, "model.estimator", modules=mods)
    trust.check_spec(cfg.model.space, "model.space", modules=mods)
    for name, spec in cfg.features.steps.items():
        trust.check_spec(spec, f"features.steps.{name}", modules=mods)
    for i, spec in enumerate(cfg.features.custom):
        if isinstance(spec, dict) and spec.get("_target_"):  # else: custom.py says what
            trust.check_custom(spec, f"features.custom[{i}]", modules=mods)


# A name that becomes (part of) a file or folder name: no separator, no "..", no hidden file.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
NAME_FORM = (
    "1-100 letters, digits, '_', '-' or '.', starting with a letter or digit (no '/', no spaces)"
)


def check_name(key: str, value: Any) -> None:
    """Refuse a config value that would escape its folder (or hide) as a file name part.

    Raises
    ------
    ConfigError
        Naming the key, the value and the allowed form.
    """
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ConfigError(
            f"config key {key}={value!r} becomes part of a file name and is not a safe "
            f"name: use {NAME_FORM}"
        )


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
        check_name(key, value)


def _model_checks(m: ModelConfig) -> None:
    # The rule lives beside the search that applies it (one value for every member, or
    # searched in model.space, never both).
    from geoensemble.ensemble.precedence import check_precedence

    check_precedence(m.n_clusters, m.estimator, m.space)


def _features_checks(f: FeaturesConfig) -> None:
    from geoensemble.features.indices import SENSORS

    if f.sensor not in SENSORS:
        raise ConfigError(
            f"config key features.sensor={f.sensor!r} is unknown: use one of {list(SENSORS)}"
        )
    if f.impute not in {None, "median", "mean", "constant"}:
        raise ConfigError(
            f"config key features.impute={f.impute!r} is unknown: use median, mean, "
            f"constant or null"
        )
    if f.nan_threshold > 0 and f.impute is None:
        raise ConfigError(
            f"config key features.nan_threshold={f.nan_threshold} lets pixels with NaN features "
            f"reach the model but features.impute is null: set features.impute=median (or "
            f"mean, constant), or features.nan_threshold=0"
        )
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
    from geoensemble.io.checks import check_data_config

    check_data_config(d)


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


def _read_params_yaml(p: Path) -> Any:
    """The plain data of the YAML file ``p``, read with OmegaConf's loader within bounds.

    Raises
    ------
    ConfigError
        If the file is over :data:`MAX_PARAMS_BYTES`, or its anchors and aliases expand to
        over :data:`MAX_PARAMS_NODES` values (checked on the parsed graph, before expanding).
    """
    from omegaconf._utils import get_yaml_loader

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
    loader = get_yaml_loader()(text)
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
    return validate(_with_overrides(loaded, overrides, p))


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


_MISSING = object()


def to_dict(cfg: AppConfig) -> dict[str, Any]:
    """The config as plain, YAML-friendly Python objects (enums as strings)."""
    out = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)
    assert isinstance(out, dict)
    return out  # type: ignore[return-value]


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to dotted keys (``model.estimator.n_clusters``)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
