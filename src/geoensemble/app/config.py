"""The config schema (structured configs) and its validation.

The YAML tree in ``conf/`` stays free of schema references so that DVC can compose it into
``params.yaml`` on its own; the schema below is applied once, when a stage starts, by
:func:`validate`. Errors name the full key, the bad value and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from omegaconf import OmegaConf

from geoensemble.ensemble import defaults


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
    random within each class of the assessed map (``stratified``). See docs/evaluation.md."""

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
class StacSearchConfig:
    """A STAC API search (``data.format: stac_api``, ``data.path``: the API root URL)."""

    collections: list[str] = field(default_factory=list)  # e.g. [landsat-c2-l2]
    bbox: list[float] | None = None  # [west, south, east, north] in degrees
    datetime: str | None = None  # 2023-07-01/2023-07-31 or one instant
    max_cloud: float | None = None  # eo:cloud_cover <= this (percent)
    limit: int = 1  # items taken (several: layers get the item date as a suffix)


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
    product: str = "none"  # none | landsat_c2_l2 | sentinel2_l2a | sentinel2_l2a_pre04
    qa: str = "mask"  # the product's QA band: mask (flagged -> NaN) | features (0/1) | keep
    qa_flags: list[str] | None = None  # flags masked or made features; null: the preset's
    stac: StacSearchConfig = field(default_factory=StacSearchConfig)
    # data.path may also be an http(s):// or s3:// URL of a COG, a .txt listing such URLs
    # (one a line), or a STAC item / item collection JSON (a file or a URL)
    truth: str | None = None
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    scene: SceneConfig = field(default_factory=SceneConfig)


@dataclass
class SampleConfig:
    """The training sample: at most ``size`` valid pixels, seeded, optionally class-balanced."""

    size: int = defaults.SAMPLE
    stratify: bool = False  # with labels: an equal share per class (as far as classes allow)


@dataclass
class FeaturesConfig:
    """Raster-level features, the NaN policy and the learned steps (see docs/features.md)."""

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

    folds: int = defaults.CV_FOLDS
    block_size: int = defaults.CV_BLOCK  # pixels per side of a square block; a block is never split
    buffer: int = 0  # training pixels this close (px, Chebyshev) to a test pixel are left out


@dataclass
class EnsembleConfig:
    size: int = defaults.SIZE
    generations: int = defaults.GENERATIONS
    keep: int = defaults.KEEP
    metric: str = defaults.CRITERION
    direction: Direction = Direction.minimize
    objectives: list[ObjectiveConfig] = field(default_factory=list)
    patience: int = defaults.PATIENCE
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
class RegulariseConfig:
    """A regularised copy of each scene's main class map (docs/python-api.md)."""

    enabled: bool = True  # writes <main map>_regularised.tif beside the main map
    majority_radius: int | None = 1  # the (2r+1)^2 majority filter; null: none
    min_pixels: int | None = 5  # minimum mapping unit in pixels; null: none
    min_hectares: float | None = None  # or in hectares (projected maps), instead of pixels
    connectivity: int = 4  # 4: patches touch by edges; 8: by edges and corners


@dataclass
class PredictConfig:
    """Which models predict which scenes, and what is written (see docs/predict.md)."""

    model_uri: str | None = None  # default: models:/<tracking.model_name>@<alias>
    alias: str = "champion"
    models: list[str] = field(default_factory=list)  # more model URIs (members)
    ensemble: str | None = None  # every kept member: parent run id, key:value tag, or latest
    external: ExternalModelConfig = field(default_factory=ExternalModelConfig)
    scenes: list[DataConfig] = field(default_factory=list)  # default: the training features
    outputs: PredictOutputsConfig = field(default_factory=PredictOutputsConfig)
    regularise: RegulariseConfig = field(default_factory=RegulariseConfig)
    class_map: bool = True  # clusters named after a reference: also <main map>_classes.tif
    output_dir: str = "outputs/maps"
    block_size: int = 512  # block edge in pixels; a multiple of the 512-px tiles
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


class RegistryAction(StrEnum):
    list = "list"
    prune = "prune"


@dataclass
class RegistryConfig:
    """``geoensemble registry list|prune [--dry-run]``: the versions geoensemble registered,
    and deleting those no alias holds."""

    action: RegistryAction = RegistryAction.list
    dry_run: bool = False  # prune: say what would be deleted, delete nothing


class RegisterMode(StrEnum):
    """When a training registers its kept members (it always logs them as models)."""

    auto = "auto"  # only the workspace pipeline (dvc repro on the committed params.yaml)
    always = "always"  # any training: experiments, sweeps, mlflow run, by hand
    never = "never"


@dataclass
class TrackingConfig:
    uri: str | None = None
    experiment: str = "geoensemble"
    model_name: str = ""  # "": <data.name>-<model.name>, e.g. synthetic-kmeans
    register: RegisterMode = RegisterMode.auto
    artifact_root: str = "mlartifacts"
    timeout: float = 10.0  # seconds to wait for a tracking server before giving up


@dataclass
class ComputeConfig:
    """A LocalCluster (``address`` null) or an existing dask scheduler (see docs/compute.md)."""

    address: str | None = None  # tcp://host:8786 of a running `dask scheduler`
    n_workers: int = 2  # LocalCluster only
    threads_per_worker: int = 1  # LocalCluster only
    processes: bool = True  # LocalCluster only: worker processes (true) or threads
    memory_limit: str = "auto"  # LocalCluster only, per worker
    timeout: float = 30.0  # seconds to wait for local workers, or a scheduler and a worker
    retries: int = defaults.RETRIES  # times a member's task is rerun after its worker died


@dataclass
class TrustConfig:
    """Code and model types trusted beyond geoensemble's own (see :mod:`geoensemble.trust`).

    A params file names code that runs: ``_target_`` entries may only name scikit-learn
    classes and geoensemble's own functions and transformers, or a module listed here.
    """

    modules: list[str] = field(default_factory=list)  # modules a _target_ may name (yours)
    types: list[str] = field(default_factory=list)  # more types a registered model may hold
    params: list[str] = field(default_factory=list)  # file/cache parameters allowed (memory...)


@dataclass
class ValidationSampleConfig:
    """``geoensemble sample``: a stratified random sample of a class map to label
    (docs/evaluation.md, "A validation sample to label")."""

    map: str | None = None  # the class map to sample, e.g. outputs/maps/<scene>_..._champion.tif
    out: str = "reports/validation_sample.gpkg"
    target_se: float = 0.01  # standard error of overall accuracy the sample size aims at
    users_accuracy: float = 0.8  # the user's accuracy the size formula assumes per class
    min_per_class: int = 50  # fewest points per class (all of a class's pixels if fewer)
    exclude_labels: bool = True  # no point on a training label (paths.labels/labels.tif)


@dataclass
class LimitsConfig:
    """Sizes checked before work starts (docs/troubleshooting.md): raise one if you
    mean it."""

    max_pixels: int = 2_000_000_000  # pixels one raster file may declare
    max_members: int = 500  # ensemble.size x ensemble.generations
    max_clusters: int = 1000  # n_clusters / n_components, set or searched


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
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    trust: TrustConfig = field(default_factory=TrustConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    validation_sample: ValidationSampleConfig = field(default_factory=ValidationSampleConfig)


def register_configs() -> None:
    """Register the schema in Hydra's ConfigStore (as ``schema``) for tools that want it."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="schema", node=AppConfig)


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
