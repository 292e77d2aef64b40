"""The MLflow UI in a real browser (Debian's headless chromium driven by Selenium).

It follows the README: open the view of the ensemble's members that train saves
(``mlflow_ui_view`` in ``reports/train.json``) and read them off the runs table, sorted by the
criterion with its column shown; open the experiment, expand the ensemble run, select its
members, press Compare, and read the member names and their AIC off the page and the axes of
its scatter plot. Skipped when chromium, chromedriver or Selenium is missing (``.ci/run``
installs them where apt is available).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Server

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1600,1000",
]


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless chromium with a fresh profile, closed after the test."""
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip("chromium and chromium-driver (Debian packages) are not installed")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="geoensemble-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    # an explicit driver: Selenium then never tries to download one
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def numbers(text: str) -> list[float]:
    """Every line of ``text`` that is a number (the UI writes minus as U+2212 in places)."""
    out = []
    for line in text.splitlines():
        s = line.strip().replace("\u2212", "-")
        if re.fullmatch(r"-?\d+(\.\d+)?(e[+-]?\d+)?", s):
            out.append(float(s))
    return out


def test_ui_shows_the_member_runs_and_their_aic(
    browser: Any, mlflow_server: Server, server_ensemble: dict[str, Any]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    report = server_ensemble
    parent = report["parent_run_id"]
    members = {m["member"]: m["aic"] for m in report["members"]}
    wait = WebDriverWait(browser, 60)

    browser.get(f"{mlflow_server.url}/#/experiments/{report['experiment_id']}/runs")
    # the ensemble run, collapsed; its expander shows the members
    expander = wait.until(
        lambda d: d.find_element(
            By.XPATH,
            f"//*[@role='row' and @row-id='{parent}']//*[@col-id='attributes.`Run Name`']//button",
        )
    )
    assert "ensemble-" in browser.find_element(By.XPATH, f"//*[@row-id='{parent}']").text
    expander.click()
    member_rows = "//*[@role='row' and .//*[starts-with(normalize-space(text()), 'member-')]]"
    rows = wait.until(
        lambda d: (r := d.find_elements(By.XPATH, member_rows)) and len(r) == len(members) and r
    )
    assert {r.get_attribute("row-id") for r in rows} == {m["run_id"] for m in report["members"]}

    for r in rows:
        r.find_element(By.CSS_SELECTOR, "input.ag-checkbox-input").click()
    wait.until(lambda d: d.find_element(By.XPATH, "//button[normalize-space(.)='Compare']")).click()
    wait.until(lambda d: "compare-runs" in d.current_url)
    names_row = wait.until(
        lambda d: d.find_element(By.XPATH, "//tr[.//*[normalize-space(text())='Run Name:']]")
    )
    wait.until(lambda d: d.find_elements(By.XPATH, "//a[normalize-space(text())='aic']"))
    names = [c.text for c in names_row.find_elements(By.XPATH, "./*")][1:]
    assert sorted(names) == sorted(members)

    # the metrics table lists each metric's values in the order of the run columns: the
    # member AICs must appear there, in that order (as shown: 6 significant digits)
    values = numbers(browser.find_element(By.TAG_NAME, "body").text)
    expected = [members[n] for n in names]
    n = len(expected)

    def close(v: float, e: float) -> bool:
        return abs(v - e) <= 1e-5 * abs(e) + 0.05

    found = any(all(map(close, values[i : i + n], expected)) for i in range(len(values) - n + 1))
    assert found, (names, expected, values[:60])
    browser.save_screenshot(str(mlflow_server.store / "compare.png"))

    # the scatter plot starts on what varies: the searched value against the criterion
    browser.find_element(By.XPATH, "//button[normalize-space(.)='Scatter Plot']").click()
    axes = wait.until(
        lambda d: re.search(
            r"X-axis:\s*(\S+)\s*Y-axis:\s*(\S+)", d.find_element(By.TAG_NAME, "body").text
        )
    )
    assert axes.groups() == ("model.n_clusters", "aic"), axes.group(0)


def test_saved_view_lists_the_members_best_first_with_the_criterion(
    browser: Any, mlflow_server: Server, server_ensemble: dict[str, Any]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    report = server_ensemble
    members = {m["run_id"]: m for m in report["members"]}
    wait = WebDriverWait(browser, 60)
    view = report["mlflow_ui_view"]
    assert view == (
        f"#/experiments/{report['experiment_id']}/runs?viewStateShareKey=members-by-aic"
    )
    # the address train printed: the server's own, no command to run first
    printed = report["mlflow_ui_url"]
    assert printed == f"{mlflow_server.url}/{view}&workflowType=machine_learning"
    assert report["mlflow_ui_command"] is None
    browser.get(printed)
    # the view's filter, sort and columns land in the page's address and table
    wait.until(lambda d: "orderByKey=metrics.%60aic%60" in d.current_url)
    assert "orderByAsc=true" in browser.current_url
    assert report["parent_run_id"] in browser.current_url  # this ensemble's members only
    column = "metrics.`aic`"
    header = wait.until(
        lambda d: d.find_element(By.XPATH, f"//*[@role='columnheader' and @col-id='{column}']")
    )
    assert header.text.strip() == "aic"
    cells = f"//*[@role='row' and @row-id]//*[@col-id='{column}']"
    rows = wait.until(
        lambda d: (c := d.find_elements(By.XPATH, cells)) and len(c) == len(members) and c
    )
    shown = sorted(
        (
            int(
                cell.find_element(By.XPATH, "./ancestor::*[@role='row'][1]").get_attribute(
                    "row-index"
                )
            ),
            cell.find_element(By.XPATH, "./ancestor::*[@role='row'][1]").get_attribute("row-id"),
            float(cell.text.replace("\u2212", "-")),
        )
        for cell in rows
    )
    order = [run_id for _, run_id, _ in shown]
    assert order == sorted(members, key=lambda r: members[r]["aic"])  # best (lowest) first
    for _, run_id, value in shown:
        assert value == pytest.approx(members[run_id]["aic"], rel=1e-4)
    # k is a column too
    k = "metrics.`n_clusters`"
    wait.until(lambda d: d.find_element(By.XPATH, f"//*[@role='columnheader' and @col-id='{k}']"))
    ks = wait.until(
        lambda d: (
            (c := d.find_elements(By.XPATH, f"//*[@role='row' and @row-id]//*[@col-id='{k}']"))
            and len(c) == len(members)
            and c
        )
    )
    assert {float(c.text) for c in ks} == {float(m["n_clusters"]) for m in members.values()}
    browser.save_screenshot(str(mlflow_server.store / "view.png"))


def test_registered_model_page_shows_its_description_and_champion(
    browser: Any, mlflow_server: Server, server_ensemble: dict[str, Any], tiny_store: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from geoensemble.app import stages
    from tests.integration.conftest import compose_tiny

    report = server_ensemble
    version = report["champion"]["version"]
    cfg = compose_tiny(
        tiny_store,
        f"tracking.uri={mlflow_server.url}",
        "tracking.model_name=server_model",
        f"promote.version={version}",
    )
    stages.STAGES["promote"](cfg)
    wait = WebDriverWait(browser, 60)
    browser.get(f"{mlflow_server.url}/#/models/server_model?workflowType=machine_learning")
    body = lambda d: d.find_element(By.TAG_NAME, "body").text  # noqa: E731
    wait.until(lambda d: "ensemble members trained on data set" in body(d))
    text = body(browser)
    assert "kmeans (cluster) ensemble members trained on data set" in text
    assert "@ champion" in text or "@champion" in text or "champion" in text.split()
    browser.save_screenshot(str(mlflow_server.store / "model.png"))
