"""The MLflow UI lists a finished sweep's runs: a real `mlflow server` on 127.0.0.1 over the
sweep's SQLite store, opened in headless Chromium (Debian's, driven by playwright)."""

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
from conftest import start_mlflow_server

from harness.cli import main

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def server(tmp_path, store):
    """A sweep of 4 trials in a fresh store, and a real MLflow server over it."""
    f = tmp_path / "ui.yaml"
    f.write_text((ROOT / "tests" / "data" / "ui.yaml").read_text())
    code = main(["run", str(f), "--results", str(tmp_path / "results"), "--tracking-uri",
                 store, "--quiet"])
    assert code == 0
    proc, url = start_mlflow_server(store)
    yield url
    proc.terminate()
    try:  # a client's keep-alive connection can hold a graceful shutdown open
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=20)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_ui_lists_the_child_runs(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    query = urllib.request.urlopen(
        f"{server}/api/2.0/mlflow/experiments/get-by-name?experiment_name=ui", timeout=10)
    experiment = json.load(query)["experiment"]["experiment_id"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 800})
        page.goto(f"{server}/#/experiments/{experiment}/runs", wait_until="domcontentloaded")
        parent = page.locator("text=/^ui \\d{4}-/").first
        parent.wait_for(timeout=60_000)
        # the parent's row has a button that unfolds its children
        cell = parent.locator("xpath=ancestor::div[@role='gridcell'][1]")
        cell.locator("button").first.click()
        for seed in (0, 1):
            for name in ("sgd", "adam"):
                label = f"text=/optimizer={name}.*seed={seed}/"
                page.locator(label).first.wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "mlflow_ui.png"))
        browser.close()
    assert (tmp_path / "mlflow_ui.png").stat().st_size > 10_000


def _search(server: str, experiment: str, query: str) -> list[dict]:
    body = json.dumps({"experiment_ids": [experiment], "filter": query,
                       "max_results": 1000}).encode()
    req = urllib.request.Request(f"{server}/api/2.0/mlflow/runs/search", data=body,
                                 headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=30)).get("runs", [])


@pytest.mark.slow
def test_a_rerun_through_the_server_adds_no_parent_and_names_keep_seed_and_backend(
        server, tmp_path):
    """Over the REST API of the real server: the sweep's one parent, its four children named
    with their backend and seed; a re-run through the server itself (every trial already
    finished) runs nothing and leaves no new, empty parent."""
    query = urllib.request.urlopen(
        f"{server}/api/2.0/mlflow/experiments/get-by-name?experiment_name=ui", timeout=10)
    experiment = json.load(query)["experiment"]["experiment_id"]
    parents = "tags.`harness.kind` = 'parent'"
    assert len(_search(server, experiment, parents)) == 1
    f = tmp_path / "ui.yaml"
    code = main(["run", str(f), "--results", str(tmp_path / "results"), "--tracking-uri",
                 server, "--quiet"])
    assert code == 0
    assert len(_search(server, experiment, parents)) == 1
    children = _search(server, experiment, "tags.`harness.kind` = 'trial'")
    names = sorted(r["info"]["run_name"] for r in children)
    assert len(names) == 4, names
    for name in names:
        assert "numpy" in name and any(f"seed={s}" in name for s in (0, 1)), name
        assert len(name) <= 60, name
