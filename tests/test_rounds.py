"""Seeds until decided (`seeds: {min, max, round}`): the runner judges after each round and
adds seeds only to the arms of undecided claims; report replays the same looks (issue 15)."""

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.config import ConfigErrors, load

ROOT = Path(__file__).resolve().parents[1]

# lr 0.05 against 0.0005 on mario: decided at once; 0.05 against 0.049: never (a tie)
ROUNDS = """\
name: rounds
task: {name: mario, n_train: 256, n_val: 128, n_test: 128}
model: {arch: mlp, depth: 1, width: 8}
optimizer: {name: sgd, lr: 0.05}
train: {epochs: 2, batch_size: 64}
backends: [numpy]
seeds: {min: 3, max: 5}
sweep:
  optimizer.lr: [0.05, 0.0005, 0.049]
expect:
  - better: {optimizer.lr: 0.05}
    than: {optimizer.lr: 0.0005}
    metric: val/mae
  - better: {optimizer.lr: 0.05}
    than: {optimizer.lr: 0.049}
    metric: val/mae
"""


def _harness(tmp: Path, command: str, f: Path):
    return subprocess.run(
        [sys.executable, "-m", "harness", command, str(f), "--results", str(tmp / "results"),
         "--tracking-uri", f"sqlite:///{tmp / 'mlflow.db'}"],
        capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_seed_rounds_read_as_range_of_min(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text(ROUNDS)
    exp, trials = load(f)
    assert exp.seeds == (0, 1, 2) and (exp.seed_rounds.min, exp.seed_rounds.max) == (3, 5)
    assert len(trials) == 3 * 3
    f.write_text(ROUNDS.replace("{min: 3, max: 5}", "{min: 1, max: 2, rounds: 1}"))
    with pytest.raises(ConfigErrors) as info:
        load(f)
    messages = "\n".join(str(e) for e in info.value.errors)
    assert "seeds.min: expected a value >= 2" in messages
    assert "seeds.rounds" in messages and "did you mean 'round'" in messages


def test_only_the_undecided_claims_arms_get_more_seeds(tmp_path, store):
    f = tmp_path / "rounds.yaml"
    f.write_text(ROUNDS)
    proc = _harness(tmp_path, "run", f)
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "results" / "rounds" / "trials.csv") as rows:
        rows = list(csv.DictReader(rows))
    seeds = {lr: sorted(int(r["seed"]) for r in rows if r["optimizer.lr"] == lr)
             for lr in ("0.05", "0.0005", "0.049")}
    # the tie is never decided: its arms run to the max; lr 0.0005 stops where its claim
    # was decided (the look that report names), though lr 0.05 goes on with the tie
    assert seeds["0.049"] == [0, 1, 2, 3, 4] and seeds["0.05"] == [0, 1, 2, 3, 4]
    assert "look 1 (3 seeds a side)" in proc.stderr and "look 3 (5 seeds a side)" in proc.stderr
    report = _harness(tmp_path, "report", f)
    assert report.returncode == 0, report.stderr
    claims = (tmp_path / "results" / "rounds" / "claims.md").read_text()
    first, tie = [line for line in claims.splitlines() if line.startswith("| optimizer.lr")]
    assert "**PASS**" in first and "**INCONCLUSIVE**" in tie and "look 3 of 3" in tie
    n = int(re.search(r"look \d of 3 \((\d) seeds a side\)", first).group(1))
    assert seeds["0.0005"] == list(range(n)), (n, seeds)
    with open(tmp_path / "results" / "rounds" / "trials.csv") as again:
        assert len(list(csv.DictReader(again))) == len(rows)  # no "missing" seeds 3, 4
