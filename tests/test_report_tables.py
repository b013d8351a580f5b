"""The verdict table as data (issue 17): claims.csv, `report --format markdown|latex|csv
--columns`, the tuned values per claim, `report A.yaml B.yaml`, and the folder's one table;
all against a real MLflow store that a real `harness run` filled (14 trials: slow)."""

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from harness.reporting.tables import COLUMNS, read_csv, render

ROOT = Path(__file__).resolve().parents[1]

TUNED = """\
name: tabled
task: {name: digits, n_train: 256}
model: {arch: mlp, activation: relu, init: he, depth: 1, width: 16}
optimizer: {name: sgd, lr: 0.1}
train: {epochs: 2, batch_size: 32}
backends: [numpy]
seeds: [0, 1, 2]
sweep:
  optimizer.name: [sgd, adam]
tune:
  grid: {optimizer.lr: [0.003, 0.1]}
  metric: val/accuracy
  seeds: [100]
expect:
  - better: {optimizer.name: adam}
    than: {optimizer.name: sgd}
    metric: val/accuracy
"""

PLAIN = """\
name: plain
task: {name: digits, n_train: 256}
model: {arch: mlp, activation: relu, init: he, depth: 1, width: 16}
optimizer: {name: sgd, lr: 0.1}
train: {epochs: 2, batch_size: 32}
backends: [numpy]
seeds: [0, 1]
sweep:
  model.width: [8, 16]
expect:
  - better: {model.width: 16}
    than: {model.width: 8}
    metric: train/loss
"""


def harness(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args, "--results", str(tmp / "results"),
         "--tracking-uri", f"sqlite:///{tmp / 'mlflow.db'}"],
        capture_output=True, text=True, cwd=ROOT, timeout=600)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tables")
    folder = tmp / "exps"
    folder.mkdir()
    (folder / "tabled.yaml").write_text(TUNED)
    (folder / "plain.yaml").write_text(PLAIN)
    proc = harness(tmp, "run", str(folder), "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp, folder


@pytest.mark.slow
def test_claims_csv_holds_every_column_and_the_tuned_values(store):
    tmp, folder = store
    assert harness(tmp, "report", str(folder / "tabled.yaml")).returncode == 0
    recs = read_csv(tmp / "results" / "tabled" / "claims.csv")
    assert len(recs) == 1 and set(recs[0]) == set(COLUMNS)
    r = recs[0]
    assert r["experiment"] == "tabled" and r["verdict"] in ("PASS", "FAIL", "INCONCLUSIVE")
    assert r["n_a"] == 3 and r["n_b"] == 3
    # the chosen rate of each arm, as tuning.csv's choice says it
    chosen = {}
    with open(tmp / "results" / "tabled" / "claims.md") as f:
        for line in f:
            if line.startswith("| optimizer.name="):
                cells = [c.strip() for c in line.split("|")]
                chosen[cells[1]] = cells[3]
    a, b = r["tuned"].split("; ")
    assert a == chosen["optimizer.name=adam"] and b == chosen["optimizer.name=sgd"], (r, chosen)
    # the diff is the difference of the means, to the last digit
    assert r["diff"] == pytest.approx(r["a_mean"] - r["b_mean"], rel=1e-12)


@pytest.mark.slow
def test_format_and_columns_print_the_chosen_table(store):
    tmp, folder = store
    proc = harness(tmp, "report", str(folder / "plain.yaml"), "--format", "csv",
                   "--columns", "claim,verdict,p_holm")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.reader(io.StringIO(proc.stdout)))
    assert rows[0] == ["claim", "verdict", "p_holm"] and len(rows) == 2
    saved = read_csv(tmp / "results" / "plain" / "claims.csv")[0]
    assert rows[1][1] == saved["verdict"]
    latex = harness(tmp, "report", str(folder / "plain.yaml"), "--format", "latex",
                    "--columns", "claim,diff")
    assert latex.returncode == 0
    assert latex.stdout.startswith(r"\begin{tabular}{ll}") and r"\bottomrule" in latex.stdout
    assert r"claim & A $-$ B \\" in latex.stdout  # the header, its minus sign in math mode


@pytest.mark.slow
def test_an_unknown_column_is_refused_with_its_near_miss(store):
    tmp, folder = store
    proc = harness(tmp, "report", str(folder / "plain.yaml"), "--columns", "claim,verdcit")
    assert proc.returncode == 2
    assert "'verdcit'; did you mean 'verdict'?" in proc.stderr


@pytest.mark.slow
def test_two_files_side_by_side(store):
    tmp, folder = store
    proc = harness(tmp, "report", str(folder / "plain.yaml"), str(folder / "tabled.yaml"))
    assert proc.returncode == 0, proc.stderr
    out = tmp / "results" / "compare" / "plain-vs-tabled"
    recs = read_csv(out / "claims.csv")
    assert [r["experiment"] for r in recs] == ["plain", "tabled"]
    assert (out / "curves.png").stat().st_size > 0 and (out / "val_curves.png").exists()
    with open(out / "summary.csv") as f:
        assert {r["experiment"] for r in csv.DictReader(f)} == {"plain", "tabled"}


@pytest.mark.slow
def test_the_folder_table_has_one_row_per_claim_of_every_file(store):
    tmp, folder = store
    assert harness(tmp, "report", str(folder)).returncode == 0
    recs = read_csv(tmp / "results" / "claims.csv")
    assert sorted(r["experiment"] for r in recs) == ["plain", "tabled"]
    text = (tmp / "results" / "claims.md").read_text()
    assert "| experiment | claim | verdict |" in text


def test_render_formats_round_numbers_but_csv_keeps_them():
    rec = {c: None for c in COLUMNS} | {"claim": "a | b", "diff": 0.123456789, "n_a": 3}
    md = render([rec], ["claim", "diff", "n_a"])
    assert r"a \| b" in md and "0.123 |" in md
    assert "0.123456789" in render([rec], ["diff"], "csv")
    assert r"50\% of x\_y" in render([rec | {"claim": "50% of x_y"}], ["claim"], "latex")
