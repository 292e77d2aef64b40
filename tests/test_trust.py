"""The one policy for ``_target_`` and the skops allow-list (:mod:`geoensemble.trust`).

These run the library functions directly (as a notebook would, without config validation),
so the import-time checks are what is tested: re-exports, nested targets, searched values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skops.io

from geoensemble.app.config import FeaturesConfig
from geoensemble.app.estimators import build_pipeline
from geoensemble.errors import ConfigError
from geoensemble.features.build import build_features
from geoensemble.trust import CLASS, FUNCTION, SKOPS_TYPES, resolve
from tests.conftest import ROOT
from tests.features.conftest import stack_dataset

KMEANS = {"_target_": "sklearn.cluster.MiniBatchKMeans", "n_clusters": 3, "n_init": 1}


@pytest.mark.parametrize(
    ("target", "kind", "match"),
    [
        # a blocked module reached through an allowed package is caught by where it lives
        # a private module, even of an allowed package, is never named (nor shutil inside it)
        ("sklearn.datasets._base.shutil.rmtree", CLASS, r"names the private part '_base'"),
        ("sklearn.utils._testing.TempMemmap", CLASS, r"names the private part '_testing'"),
        ("sklearn.feature_selection.f_classif", CLASS, r"is a function, not a class"),
        ("sklearn.datasets.dump_svmlight_file", FUNCTION, r"outside geoensemble's allow-list"),
        ("geoensemble.io.atomic.replace", CLASS, r"outside geoensemble's allow-list"),
        ("sklearn.base.__builtins__", CLASS, r"is not a dotted Python name"),
        ("posix.system", FUNCTION, r"names module posix, which runs commands"),
        ("sklearn.cluster.NoSuchModel", CLASS, r"cannot be imported; check the module and name"),
    ],
)
def test_the_policy_refuses_with_one_line(target: str, kind: str, match: str) -> None:
    with pytest.raises(ConfigError, match=rf"^k=.*{match}"):
        resolve(target, "k", kind=kind)


def test_our_own_targets_resolve() -> None:
    assert resolve("sklearn.cluster.MiniBatchKMeans", "k").__name__ == "MiniBatchKMeans"
    assert resolve("geoensemble.features.transformers.RandomBandSubset", "k")
    assert resolve("geoensemble.features.custom.savi", "k", kind=FUNCTION)


def test_pydoc_pipepager_as_a_custom_function_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    spec = {"_target_": "pydoc.pipepager", "text": "x", "cmd": f"touch {marker}"}
    for trusted in ([], ["pydoc"]):  # not even an explicit trust.modules opens it
        # the library names the argument (custom); the stages render it as features.custom
        with pytest.raises(ConfigError, match=r"(^|\s)custom\[0\]\._target_='pydoc"):
            build_features(stack_dataset(), FeaturesConfig(custom=[spec]), trusted_modules=trusted)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("steps", "params", "match"),
    [
        (
            {"s": {"_target_": "subprocess.Popen", "args": ["touch", "{marker}"]}},
            {},
            r"features\.steps\.s\._target_='subprocess\.Popen' names module subprocess",
        ),
        (
            {
                "best": {
                    "_target_": "sklearn.feature_selection.SelectKBest",
                    "score_func": {"_target_": "hydra.utils.get_method", "path": "os.system"},
                }
            },
            {},
            r"features\.steps\.best\.score_func\.path='os\.system' names module os",
        ),
        (
            {},
            {"init": {"_target_": "subprocess.Popen", "args": ["touch", "{marker}"]}},
            r"model\.space\.init\._target_='subprocess\.Popen' names module subprocess",
        ),
    ],
    ids=["step", "nested-reference", "searched-value"],
)
def test_every_target_hydra_would_build_is_checked_first(
    steps: dict, params: dict, match: str, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    fill = str(marker)
    for spec in [*steps.values(), *params.values()]:
        if "args" in spec:
            spec["args"] = [a.replace("{marker}", fill) for a in spec["args"]]
    with pytest.raises(ConfigError, match=match):
        build_pipeline(steps, KMEANS, params=params)
    assert not marker.exists()


def test_a_trusted_module_of_your_own_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_steps.py").write_text(
        "from sklearn.preprocessing import StandardScaler\n\n"
        "class Scale(StandardScaler):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    steps = {"scale": {"_target_": "my_steps.Scale"}}
    with pytest.raises(ConfigError, match=r"trust\.modules=\[my_steps\]"):
        build_pipeline(steps, KMEANS)
    pipe = build_pipeline(steps, KMEANS, trusted_modules=["my_steps"])
    assert type(pipe.named_steps["scale"]).__name__ == "Scale"


def _untrusted_types(model: str, features: str) -> set[str]:
    from geoensemble.app.params import compose
    from geoensemble.app.validate import validate
    from geoensemble.ensemble.precedence import member_estimator

    cfg = validate(
        compose(
            [f"model={model}", f"features={features}", "features.impute=median"],
            config_dir=ROOT / "conf",
        )
    )
    steps = {k: (dict(v) if v is not None else None) for k, v in cfg.features.steps.items()}
    est = member_estimator(dict(cfg.model.estimator))
    for key, spec in cfg.model.space.items():  # a member's value of each searched parameter
        if "__" not in key:
            est[key] = spec[0] if isinstance(spec, list) else spec["low"]
    pipe = build_pipeline(steps, est, impute="median", n_features=11)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 11)).astype(np.float32)
    kind = cfg.model.kind.value
    y = {"classifier": rng.integers(0, 3, 120), "regressor": rng.normal(size=120)}.get(kind)
    pipe.fit(X, y)
    return set(skops.io.get_untrusted_types(data=skops.io.dumps(pipe)))


def test_the_skops_allow_list_covers_every_model_and_features_config() -> None:
    models = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))
    features = sorted(p.stem for p in (ROOT / "conf" / "features").glob("*.yaml"))
    # every model with plain features, every features config with a supervised model
    combos = {(m, "bands") for m in models} | {("random_forest", f) for f in features}
    needed = set().union(*(_untrusted_types(m, f) for m, f in sorted(combos)))
    assert needed <= set(SKOPS_TYPES), needed - set(SKOPS_TYPES)
    assert "geoensemble.features.transformers.RandomBandSubset" in needed
