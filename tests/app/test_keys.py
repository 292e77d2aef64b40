"""Library errors and warnings name arguments; the stages render them as config keys."""

from __future__ import annotations

import ast
import logging
import pickle
import re
from pathlib import Path

import pytest

from geoensemble.app.keys import KEYS, config_keys, keyed, render
from geoensemble.errors import ConfigError, InputFileError

SRC = Path(__file__).resolve().parents[2] / "src" / "geoensemble"
TABLE = {
    "fit_ensemble.nan_threshold": "features.nan_threshold",
    "fit_ensemble.impute": "features.impute",
}


def test_render_replaces_only_the_names_standing_alone() -> None:
    args = {"nan_threshold": "fit_ensemble.nan_threshold", "impute": "fit_ensemble.impute"}
    text = "nan_threshold=2 needs impute: set impute=median (see /data/impute.tif, impute())"
    assert render(text, args, TABLE) == (
        "features.nan_threshold=2 needs features.impute: set features.impute=median "
        "(see /data/impute.tif, impute())"
    )
    assert render(text, {"x": "nowhere.x"}, TABLE) == text  # no key: the name stays


def test_an_error_keeps_its_class_its_notes_and_its_arguments_through_pickle() -> None:
    exc = InputFileError("layers[0].band=9 is not a band", arguments={"layers": "ReadSpec.layers"})
    back = pickle.loads(pickle.dumps(exc))  # as from a dask worker
    assert type(back) is InputFileError and back.arguments == {"layers": "ReadSpec.layers"}
    assert str(back) == str(exc)
    exc.add_note("a note")
    new = keyed(exc, {"ReadSpec.layers": "data.layers"})
    assert type(new) is InputFileError and isinstance(new, OSError)
    assert str(new) == "data.layers[0].band=9 is not a band" and new.__notes__ == ["a note"]
    plain = ConfigError("no argument here")
    assert keyed(plain) is plain


def test_config_keys_renders_errors_and_records_of_the_block(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(KEYS, "fit_ensemble.impute", "features.impute")
    log = logging.getLogger("geoensemble")
    args = {"impute": "fit_ensemble.impute"}
    with caplog.at_level(logging.INFO, logger="geoensemble"):
        with pytest.raises(ConfigError, match=r"^set features\.impute=median$"):
            with config_keys():
                log.warning("NaNs left: set %s=median", "impute", extra={"arguments": args})
                raise ConfigError("set impute=median", arguments=args)
        log.warning("after: set impute=median", extra={"arguments": args})
    assert [r.getMessage() for r in caplog.records] == [
        "NaNs left: set features.impute=median",
        "after: set impute=median",  # the filter is gone with the block
    ]
    assert logging.getLogger("geoensemble").filters == []


def _declared() -> set[str]:
    """Every library parameter named in an ``arguments`` mapping written in ``src/``."""
    found: set[str] = set()
    for f in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Dict):
                pairs = zip(node.keys, node.values, strict=True)
                for k, v in pairs:
                    if isinstance(k, ast.Constant) and k.value == "arguments":
                        if isinstance(v, ast.Dict):
                            found |= {c.value for c in v.values if isinstance(c, ast.Constant)}
            if isinstance(node, ast.keyword) and node.arg == "arguments":
                if isinstance(node.value, ast.Dict):
                    found |= {c.value for c in node.value.values if isinstance(c, ast.Constant)}
    return found


def test_every_parameter_a_library_message_names_has_a_config_key() -> None:
    """The one table is complete: no library message reaches a stage's user with an argument
    name the user never set (a parameter only the Python API has is listed as itself)."""
    missing = sorted(_declared() - set(KEYS))
    assert missing == [], missing
    assert all("." in p for p in KEYS), "parameters are '<function or class>.<name>'"


# a config key (data.path, model.space.n_clusters), not a module, a file name or a path
CONFIG_KEY = re.compile(
    r"(?<![\w/.\-:`])(?:data|features|model|ensemble|predict|tracking|compute|paths|evaluate|"
    r"train|labels)\.[a-z_]+(?:\.[a-z_]+)*\b(?<!\.py)(?<!\.tif)(?<!\.gpkg)(?<!\.skops)"
)


def config_keys_below_the_app() -> list[str]:
    """``file:line key`` of every string literal below ``app/`` that spells a config key
    (messages, f-string parts and docstrings alike)."""
    hits = []
    for f in sorted(SRC.rglob("*.py")):
        if f.relative_to(SRC).parts[0] == "app":
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                hits += [
                    f"{f.relative_to(SRC)}:{node.lineno} {k}"
                    for k in CONFIG_KEY.findall(node.value)
                ]
    return hits


def test_no_library_module_names_a_config_key() -> None:
    """Below the app layer nothing spells a config key: messages name arguments (and say
    which parameter each stands for), docstrings name parameters."""
    assert config_keys_below_the_app() == []
