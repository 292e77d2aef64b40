"""No code or file from a params file through an allowed class's parameters (issue 21).

``FeatureAgglomeration(memory=<folder>)`` is a scikit-learn class, yet its ``joblib.Memory``
cache unpickles whatever ``output.pkl`` the folder holds; ``numpy.memmap`` truncates the file
it is given. The trust policy checks the parameters of every ``_target_``, refuses private
modules and packages' test helpers, and this proves a planted pickle never runs.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from geoensemble.app.params import compose
from geoensemble.app.validate import validate
from geoensemble.errors import ConfigError
from geoensemble.trust import check_spec, risky_param
from tests.conftest import ROOT
from tests.integration.conftest import tiny_overrides
from tests.test_bad_inputs_cli import outputs_in, stage, the_error_line


class Payload:
    """Unpickling this touches ``marker``: what an attacker's ``output.pkl`` would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def plant(cache: Path, marker: Path) -> int:
    """Replace every ``output.pkl`` under ``cache`` with the payload; return how many."""
    files = list(cache.rglob("output.pkl"))
    for f in files:
        f.write_bytes(pickle.dumps(Payload(marker)))
    return len(files)


def test_the_planted_pickle_is_where_an_allowed_step_reads_it(tmp_path: Path) -> None:
    """The control: with ``memory=`` allowed, scikit-learn really unpickles the planted file,
    so the refusals below are what keeps it from running."""
    from sklearn.cluster import FeatureAgglomeration

    X = np.random.default_rng(0).normal(size=(60, 5))
    cache, marker = tmp_path / "cache", tmp_path / "pwned"
    FeatureAgglomeration(n_clusters=2, memory=str(cache)).fit(X)
    assert plant(cache, marker) == 1
    with pytest.raises(TypeError):  # the payload ran, and returned no tree
        FeatureAgglomeration(n_clusters=2, memory=str(cache)).fit(X)
    assert marker.exists()


def test_a_memory_folder_in_a_params_file_is_refused_and_its_pickle_never_runs(
    tmp_path: Path,
) -> None:
    from sklearn.cluster import FeatureAgglomeration

    cache, marker = tmp_path / "cache", tmp_path / "pwned"
    FeatureAgglomeration(n_clusters=2, memory=str(cache)).fit(np.ones((10, 3)))
    assert plant(cache, marker) == 1
    before = sorted(p for p in cache.rglob("*"))
    step = (
        "+features.steps.agg={_target_:sklearn.cluster.FeatureAgglomeration,"
        f"n_clusters:2,memory:'{cache}'}}"
    )
    proc = stage("train", *tiny_overrides(tmp_path), step, cwd=tmp_path)

    assert proc.returncode == 2, proc.stderr
    line = the_error_line(proc, "train")
    assert re.search(
        r"features\.steps\.agg\.memory=.* is refused: parameter 'memory' reads or writes "
        r"files, caches or pickles.*trust\.params=\[memory\]",
        line,
    ), line
    assert not marker.exists()
    assert sorted(p for p in cache.rglob("*")) == before  # nothing written there either
    assert not [p for p in outputs_in(tmp_path) if "cache" not in p.parts]


def configured(tmp_path: Path, *overrides: str) -> object:
    return validate(compose([*tiny_overrides(tmp_path), *overrides], config_dir=ROOT / "conf"))


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (
            [
                "trust.modules=[numpy]",
                "+features.steps.m={_target_:numpy.memmap,filename:README.md,mode:w+,shape:[1]}",
            ],
            r"features\.steps\.m\.filename='README\.md' is refused: parameter 'filename'",
        ),
        (
            [
                "trust.modules=[numpy]",
                "+features.steps.m={_target_:numpy.memmap,_args_:[README.md,uint8,w+]}",
            ],
            r"features\.steps\.m\._args_=.* is refused: parameter '_args_' passes unnamed",
        ),
        (
            ["+features.steps.m={_target_:sklearn.utils._testing.TempMemmap,data:1}"],
            r"features\.steps\.m\._target_='sklearn\.utils\._testing\.TempMemmap' names the "
            r"private part '_testing'",
        ),
        (
            ["+features.steps.m={_target_:sklearn.utils.estimator_checks.check_estimator}"],
            r"",  # a function, not a class, refused when built; the path itself is public
        ),
        (
            ["trust.modules=[sklearn.utils._testing]"],
            r"trust\.modules\[0\]='sklearn\.utils\._testing' names the private part",
        ),
        (
            ["+model.space={model__memory:[/tmp/a,/tmp/b]}"],
            r"model\.space\.model__memory is refused: parameter 'memory'",
        ),
        (
            [
                "+features.steps.f={_target_:sklearn.preprocessing.FunctionTransformer,"
                "func:os.system}"
            ],
            r"features\.steps\.f\.func='os\.system' is refused: parameter 'func' names a "
            r"callable by a string",
        ),
    ],
    ids=[
        "memmap-filename",
        "memmap-args",
        "private-test-helper",
        "public-path",
        "private-trust",
        "searched-memory",
        "callable-string",
    ],
)
def test_parameters_and_private_names_that_reach_files_or_code_are_refused(
    overrides: list[str], match: str, tmp_path: Path
) -> None:
    readme = (ROOT / "README.md").read_bytes()[:64]
    if not match:
        configured(tmp_path, *overrides)  # validation imports nothing: refused at build
        return
    with pytest.raises(ConfigError, match=match):
        configured(tmp_path, *overrides)
    assert (ROOT / "README.md").read_bytes()[:64] == readme


def test_a_parameter_allowed_by_name_passes_and_harmless_values_always_do(tmp_path: Path) -> None:
    cfg = configured(
        tmp_path,
        "trust.params=[memory]",
        "+features.steps.agg={_target_:sklearn.cluster.FeatureAgglomeration,memory:cache}",
    )
    assert cfg.features.steps["agg"]["memory"] == "cache"  # type: ignore[attr-defined]
    check_spec({"_target_": "sklearn.linear_model.Lars", "fit_path": True}, "k", params=())
    check_spec({"_target_": "sklearn.cluster.FeatureAgglomeration", "memory": None}, "k", params=())
    assert risky_param("cache_size", 200) is None  # SVC's kernel cache, in MB
    assert risky_param("score_func", {"_target_": "hydra.utils.get_method"}) is None


def test_every_file_parameter_of_scikit_learn_is_on_the_list() -> None:
    """Every scikit-learn estimator parameter that takes a folder or a callable is refused."""
    import inspect

    from sklearn.pipeline import Pipeline
    from sklearn.utils import all_estimators

    params = {
        p
        for _, cls in [*all_estimators(), ("Pipeline", Pipeline)]
        for p in inspect.signature(cls.__init__).parameters
    }
    assert {"memory", "func", "inverse_func", "callback", "pooling_func"} <= params
    for p in ("memory",):
        assert risky_param(p, "/some/folder")
    for p in ("func", "inverse_func", "callback", "pooling_func", "score_func"):
        assert risky_param(p, "os.system")
