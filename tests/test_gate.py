"""The CI performance gate (benchmarks/gate.py, gate_ab.py, gate_worker.py).

Against the committed baseline: it passes on its baseline and fails, naming the figure, on a
planted 2x slowdown, in its comparison alone and end to end (HARNESS_GATE_SLOWDOWN makes the
gate really run one kernel twice per call). A/B, base commit against HEAD: the comparison's
rules on fake sides (slower, noisy, dropped, new, cannot measure, needs hardware), the choice
of the base on a small repository with crafted commit dates, and, slow, on a real clone:
identical trees pass, a committed change that makes a kernel do its work twice fails, and
the worker measures commit 936e544's gate (the old protocol)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import default_sigint

from benchmarks import gate, gate_ab

ROOT = Path(__file__).resolve().parents[1]
BASE = {
    "kernel/conv2d/numpy/fwd+bwd": {"value": 0.46, "better": "higher", "unit": "fraction"},
    "trial-over-bare/digits-lenet/torch": {"value": 1.04, "better": "lower", "unit": "ratio"},
    "mfu/lenet-digits/jax": {"value": 0.073, "better": "higher", "unit": "fraction"},
}


def values():
    return {k: v["value"] for k, v in BASE.items()}


def verdicts(current):
    return {r.name: r.verdict for r in gate.compare(current, BASE)}


def test_the_baseline_passes_against_itself():
    rows = gate.compare(values(), BASE)
    assert {r.verdict for r in rows} == {"ok"}
    assert "gate: passed" in gate.report(rows)


def test_a_halved_fraction_fails_and_is_named():
    current = values()
    current["kernel/conv2d/numpy/fwd+bwd"] /= 2  # the kernel got 2x slower
    rows = gate.compare(current, BASE)
    assert verdicts(current)["kernel/conv2d/numpy/fwd+bwd"] == "SLOWER"
    message = gate.report(rows)
    assert "gate: FAILED: 1 of 3 figures" in message
    assert "kernel/conv2d/numpy/fwd+bwd (2.00x)" in message.splitlines()[-1]


def test_a_doubled_overhead_ratio_fails():
    current = values()
    current["trial-over-bare/digits-lenet/torch"] *= 2
    assert verdicts(current)["trial-over-bare/digits-lenet/torch"] == "SLOWER"


@pytest.mark.parametrize("factor", [1.4, 0.5, 0.1])  # within the 1.5x, or faster
def test_noise_within_the_factor_and_speedups_pass(factor):
    current = values()
    current["kernel/conv2d/numpy/fwd+bwd"] /= factor
    current["trial-over-bare/digits-lenet/torch"] *= factor
    assert set(verdicts(current).values()) == {"ok"}


def test_a_missing_figure_fails_and_a_new_one_does_not():
    current = values()
    del current["mfu/lenet-digits/jax"]  # not measured: raised, or its backend is missing
    current["mfu/new-model/torch"] = 0.2
    v = verdicts(current)
    assert v["mfu/lenet-digits/jax"] == "NOT MEASURED"
    assert v["mfu/new-model/torch"] == "new"
    message = gate.report(gate.compare(current, BASE))
    assert "gate: FAILED: 1 of 4 figures" in message
    assert "mfu/lenet-digits/jax (not measured)" in message.splitlines()[-1]


def test_a_figure_skipped_for_missing_hardware_passes_and_says_why():
    current = values()
    del current["mfu/lenet-digits/jax"]
    rows = gate.compare(current, BASE, skipped={"mfu/lenet-digits/jax": "needs cuda, this "
                                                                        "machine has none"})
    assert {r.name: r.verdict for r in rows}["mfu/lenet-digits/jax"] == (
        "skipped: needs cuda, this machine has none")
    assert "gate: passed" in gate.report(rows)


def test_the_committed_baseline_covers_every_figure():
    committed = json.loads(gate.BASELINE.read_text())
    assert set(committed["figures"]) == {f.name for f in gate.figures()}
    for name, fig in committed["figures"].items():
        assert fig["better"] in ("higher", "lower"), name
        assert fig["value"] > 0, name
    assert committed["factor"] == gate.FACTOR == 1.5
    rows = gate.compare({k: v["value"] for k, v in committed["figures"].items()},
                        committed["figures"])
    assert {r.verdict for r in rows} == {"ok"}


def run_gate(*args, slowdown=None, cwd=ROOT):
    env = dict(os.environ, HARNESS_BENCH_THREADS="1")
    env.pop(gate.SLOWDOWN_ENV, None)
    if slowdown:
        env[gate.SLOWDOWN_ENV] = slowdown
    return subprocess.run([sys.executable, "-m", "benchmarks.gate", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)


def test_end_to_end_passes_on_its_baseline_and_fails_on_a_planted_slowdown(tmp_path):
    base = tmp_path / "gate.json"
    only = ["--only", "kernel/matmul/numpy/fwd+bwd", "kernel/conv2d/numpy/fwd+bwd",
            "--repeats", "3"]
    made = run_gate("--update", "--baseline", base, *only)
    assert made.returncode == 0, made.stdout + made.stderr
    assert set(json.loads(base.read_text())["figures"]) == {
        "kernel/matmul/numpy/fwd+bwd", "kernel/conv2d/numpy/fwd+bwd"}

    same = run_gate("--against-baseline", "--baseline", base, *only)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "gate: passed: 2 figures" in same.stdout

    slow = run_gate("--against-baseline", "--baseline", base, *only,
                    slowdown="kernel/matmul/numpy/fwd+bwd=2")
    assert slow.returncode == 1, slow.stdout + slow.stderr
    verdict = slow.stdout.split("gate: FAILED:")[1].splitlines()[0]
    assert "1 of 2 figures got slower than their baseline by more than 1.5x" in verdict
    assert "kernel/matmul/numpy/fwd+bwd" in verdict
    assert "conv2d" not in verdict
    assert "| kernel/matmul/numpy/fwd+bwd | higher |" in slow.stdout


# ----------------------------------------------------------------------------- A/B, fake sides


class Side:
    """A tree's figures for ab_rows: values[name] is a float, a list of floats (one per
    measurement, in order), or an exception to raise."""

    def __init__(self, values, better=None, needs=None):
        self.values, self.better, self.needs = values, better or {}, needs or {}
        self.calls = []

    def figures(self):
        return [{"name": n, "better": self.better.get(n, "higher"), "unit": "fraction",
                 "needs": self.needs.get(n)} for n in self.values]

    def measure(self, name, repeats):
        self.calls.append(name)
        v = self.values[name]
        if isinstance(v, Exception):
            raise v
        if isinstance(v, list):
            return v[min(self.calls.count(name), len(v)) - 1]
        return v


def ab(base, head, **kw):
    kw.setdefault("log", lambda *a: None)
    kw.setdefault("has", lambda need: False)
    rows = gate_ab.ab_rows(base, head, **kw)
    return {r.name: r for r in rows}, gate_ab.ab_report(rows, 1.5)


FIGS = {"kernel/a": 0.5, "ratio/b": 1.1}
LOWER = {"ratio/b": "lower"}


def test_ab_identical_sides_pass_and_are_measured_interleaved():
    base, head = Side(FIGS, LOWER), Side(FIGS, LOWER)
    rows, message = ab(base, head, rounds=2)
    assert {r.verdict for r in rows.values()} == {"ok"}
    assert rows["kernel/a"].worse == pytest.approx(1.0)
    assert base.calls == head.calls == ["kernel/a", "kernel/a", "ratio/b", "ratio/b"]
    assert message.splitlines()[-1] == (
        "gate: passed: 2 figures compared, none more than 1.5x worse than base")


@pytest.mark.parametrize("name, head_value", [("kernel/a", 0.25), ("ratio/b", 2.2)])
def test_ab_a_2x_worse_head_fails_after_every_retry_and_is_named(name, head_value):
    head = Side(dict(FIGS, **{name: head_value}), LOWER)
    rows, message = ab(Side(FIGS, LOWER), head, rounds=2, retries=2)
    assert rows[name].verdict == "SLOWER" and rows[name].fails
    assert rows[name].worse == pytest.approx(2.0)
    assert rows[name].tries == 3 and head.calls.count(name) == 6  # 3 tries, 2 rounds each
    other = next(n for n in FIGS if n != name)
    assert rows[other].verdict == "ok"
    last = message.splitlines()[-1]
    assert last.startswith("gate: FAILED: 1 of 2 figures") and f"{name} (2.00x)" in last
    assert other not in last
    assert f"| {name} | " in message and "| 2.00x | SLOWER (measured 3x) |" in message


def test_ab_fails_only_if_every_try_says_so_and_keeps_the_best_round():
    # HEAD's first try is 2x worse (a noisy minute), its retry is not: ok
    head = Side({"kernel/a": [0.25, 0.25, 0.5, 0.45]})
    rows, message = ab(Side({"kernel/a": 0.5}), head, rounds=2, retries=2)
    assert rows["kernel/a"].verdict == "ok" and rows["kernel/a"].tries == 2
    assert rows["kernel/a"].head == 0.5  # the best of the retry's two rounds
    assert "gate: passed" in message
    # one bad round out of two in the only try: the best round decides
    rows, _ = ab(Side({"kernel/a": 0.5}), Side({"kernel/a": [0.2, 0.5]}), rounds=2)
    assert rows["kernel/a"].verdict == "ok" and rows["kernel/a"].tries == 1


def test_ab_a_dropped_figure_fails_unless_removed_with_a_reason():
    base, head = Side(FIGS, LOWER), Side({"kernel/a": 0.5})
    rows, message = ab(base, head, removed={})
    assert rows["ratio/b"].fails and rows["ratio/b"].verdict.startswith("DROPPED")
    assert "ratio/b (DROPPED)" in message.splitlines()[-1]
    rows, message = ab(base, head, removed={"ratio/b": "merged into kernel/a"})
    assert not rows["ratio/b"].fails
    assert rows["ratio/b"].verdict == "dropped: intentionally removed (merged into kernel/a)"
    assert "gate: passed: 1 figure compared (1 dropped)" in message


def test_ab_a_new_figure_is_reported_not_gated():
    head = Side(dict(FIGS, **{"kernel/new": 0.01}), LOWER)
    rows, message = ab(Side(FIGS, LOWER), head)
    assert rows["kernel/new"].verdict == "new, not gated" and not rows["kernel/new"].fails
    assert "kernel/new" not in head.calls
    assert "(1 new)" in message.splitlines()[-1]


@pytest.mark.parametrize("side", ["base", "HEAD"])
@pytest.mark.parametrize("error", [NotImplementedError("jax is not installed"),
                                   RuntimeError("boom")])
def test_ab_a_figure_one_side_cannot_measure_fails(side, error):
    broken = dict(FIGS, **{"kernel/a": gate_ab.MeasureError(f"{type(error).__name__}: "
                                                            f"{error}")})
    sides = {"base": Side(FIGS, LOWER), "HEAD": Side(FIGS, LOWER)}
    sides[side] = Side(broken, LOWER)
    rows, message = ab(sides["base"], sides["HEAD"])
    row = rows["kernel/a"]
    assert row.fails and row.verdict == (
        f"FAILED: {side} cannot measure it: {type(error).__name__}: {error}")
    assert "kernel/a (FAILED)" in message.splitlines()[-1]
    assert rows["ratio/b"].verdict == "ok"
    # the same straight from a figure's own NotImplementedError
    sides[side] = Side(dict(FIGS, **{"kernel/a": error}), LOWER)
    rows, _ = ab(sides["base"], sides["HEAD"])
    assert rows["kernel/a"].fails


def test_ab_a_needs_cuda_figure_is_skipped_on_this_machine_and_gated_on_one_with_cuda():
    figs = dict(FIGS, **{"kernel/gpu": NotImplementedError("no GPU on this machine")})
    needs = {"kernel/gpu": "cuda"}
    base, head = Side(figs, LOWER, needs), Side(figs, LOWER, needs)
    has_cuda = gate.machine_has("cuda")
    assert has_cuda == (Path("/dev/nvidiactl").exists() or bool(shutil.which("nvidia-smi")))
    rows = {r.name: r for r in gate_ab.ab_rows(base, head, log=lambda *a: None)}  # real check
    if not has_cuda:  # this CPU-only machine
        assert rows["kernel/gpu"].verdict == "skipped: needs cuda, this machine has none"
        assert not rows["kernel/gpu"].fails and "kernel/gpu" not in base.calls
    else:
        assert rows["kernel/gpu"].fails
    # where there is cuda, a needs-cuda figure that cannot be measured fails
    rows, _ = ab(base, head, has=lambda need: need == "cuda")
    assert rows["kernel/gpu"].fails and rows["kernel/gpu"].verdict.startswith("FAILED: base")


def test_against_the_baseline_a_figure_raising_not_implemented_fails(tmp_path, monkeypatch,
                                                                      capsys):
    def broken(slow, r):
        raise NotImplementedError("torch is not installed")

    figs = [gate.Figure("kernel/ok", "higher", "fraction", lambda slow, r: 0.5),
            gate.Figure("kernel/broken", "higher", "fraction", broken),
            gate.Figure("kernel/gpu", "higher", "fraction", broken, needs="cuda")]
    monkeypatch.setattr(gate, "figures", lambda: figs)
    monkeypatch.setattr(gate, "machine_has", lambda need: False)
    saved = {"date": "x", "machine": {"cpu": "x"},
             "figures": {f.name: {"value": 0.5, "better": "higher", "unit": "fraction"}
                         for f in figs}}
    (tmp_path / "gate.json").write_text(json.dumps(saved))
    assert gate.main(["--against-baseline", "--baseline", str(tmp_path / "gate.json")]) == 1
    out = capsys.readouterr().out
    assert "| kernel/broken | higher | 0.5 | - | - | NOT MEASURED |" in out
    assert "| kernel/gpu | higher | 0.5 | - | - | skipped: needs cuda, this machine has none |" \
        in out
    assert out.count("not measured)") == 1 and "kernel/broken (not measured)" in out


# ----------------------------------------------------------------------------- which base

HOUR = 3600
T = 1_800_000_000  # HEAD's commit time


def commit(repo, message, when, *extra):
    env = dict(os.environ, GIT_COMMITTER_DATE=f"@{when} +0000", GIT_AUTHOR_DATE=f"@{when} +0000")
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", message,
                    *extra], check=True, env=env)
    return gate_ab.git(repo, "rev-parse", "HEAD")


@pytest.fixture
def dated_repo(tmp_path):
    """main: c1 (T-5h), c2 (T-4h), a merge m (T-1h) of a side branch s1 (T-3.5h), c3 (T-2h
    on main before m), HEAD (T). First parents: HEAD, m, c3, c2, c1."""
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    for key, value in (("user.name", "t"), ("user.email", "t@t")):
        subprocess.run(["git", "-C", str(repo), "config", key, value], check=True)
    c = {"c1": commit(repo, "c1", T - 5 * HOUR), "c2": commit(repo, "c2", T - 4 * HOUR)}
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", "-b", "side"], check=True)
    c["s1"] = commit(repo, "s1", T - int(3.5 * HOUR))
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", "main"], check=True)
    c["c3"] = commit(repo, "c3", T - 2 * HOUR)
    env = dict(os.environ, GIT_COMMITTER_DATE=f"@{T - HOUR} +0000")
    subprocess.run(["git", "-C", str(repo), "merge", "-q", "--no-ff", "-m", "m", "side"],
                   check=True, env=env)
    c["head"] = commit(repo, "head", T)
    return repo, c


def test_the_default_base_is_the_newest_first_parent_commit_over_3_hours_older(dated_repo):
    repo, c = dated_repo
    base = gate_ab.pick_base(repo, env={})
    assert base.sha == c["c2"]  # not s1 (newer, but off the first-parent line), not c3 (2 h)
    assert "more than 3 h before" in base.how


def test_an_explicit_base_wins_over_the_environment_which_wins_over_the_rule(dated_repo):
    repo, c = dated_repo
    env = {gate_ab.BASE_ENV: c["c1"][:10]}
    assert gate_ab.pick_base(repo, env=env) == gate_ab.Base(c["c1"],
                                                            f"HARNESS_GATE_BASE={c['c1'][:10]}")
    assert gate_ab.pick_base(repo, "HEAD~1", env=env) == gate_ab.Base(
        gate_ab.git(repo, "rev-parse", "HEAD~1"), "--base HEAD~1")
    assert gate_ab.pick_base(repo, "HEAD", env=env).sha == c["head"]
    with pytest.raises(gate_ab.BadBase, match="--base nope: not a commit"):
        gate_ab.pick_base(repo, "nope", env=env)
    with pytest.raises(gate_ab.BadBase, match="HARNESS_GATE_BASE=nope: not a commit"):
        gate_ab.pick_base(repo, env={gate_ab.BASE_ENV: "nope"})


def test_without_an_old_enough_commit_the_gate_falls_back_to_the_baseline_and_says_so(
        dated_repo, tmp_path, monkeypatch, capsys):
    repo, c = dated_repo
    shallow = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "2", f"file://{repo}", str(shallow)],
                   check=True)
    assert gate_ab.pick_base(shallow, env={}) is None  # HEAD and m: 1 h apart
    monkeypatch.delenv(gate_ab.BASE_ENV, raising=False)
    monkeypatch.setattr(gate, "against_baseline", lambda args: 7)
    args = gate.argparse.Namespace(base=None)
    assert gate_ab.run(args, shallow) == 7
    out = capsys.readouterr().out
    assert "NO BASE COMMIT" in out and "(this is a shallow clone)" in out
    assert "FALLING BACK to the committed baseline results/baselines/gate.json" in out


def test_a_bad_base_exits_2_naming_it(capsys):
    assert gate.main(["--base", "no-such-rev", "--only", "cli/"]) == 2
    assert "--base no-such-rev: not a commit" in capsys.readouterr().err


# ----------------------------------------------------------------------------- A/B, real trees

GATE_FILES = ["benchmarks/gate.py", "benchmarks/gate_ab.py", "benchmarks/gate_worker.py"]
PLANT = """

# planted by tests/test_gate.py: the matmul does its work twice
_linear_forward, _linear_backward = linear_forward, linear_backward


def linear_forward(x, w, b):
    _linear_forward(x, w, b)
    return _linear_forward(x, w, b)


def linear_backward(dout, cache):
    _linear_backward(dout, cache)
    return _linear_backward(dout, cache)
"""


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A clone of this repository's HEAD, with this tree's gate committed in it (the base),
    and the commit that plants a 2x slower NumPy matmul on top (HEAD)."""
    repo = tmp_path_factory.mktemp("gate") / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    for key, value in (("user.name", "t"), ("user.email", "t@t")):
        subprocess.run(["git", "-C", str(repo), "config", key, value], check=True)
    for name in GATE_FILES:
        shutil.copy(ROOT / name, repo / name)
    subprocess.run(["git", "-C", str(repo), "add", *GATE_FILES], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", "gate"],
                   check=True)
    base = gate_ab.git(repo, "rev-parse", "HEAD")
    layers = repo / "backends" / "numpy" / "layers.py"
    assert "def linear_forward(" in layers.read_text()
    layers.write_text(layers.read_text() + PLANT)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-am", "matmul twice"], check=True)
    return repo, base


def output(run):
    return run.stdout + run.stderr


@pytest.mark.slow
def test_ab_a_committed_2x_slower_kernel_fails_and_is_named(clone):
    repo, base = clone
    run = run_gate("--base", base, "--only", "kernel/matmul/numpy", "kernel/conv2d/numpy",
                   "--repeats", "3", cwd=repo)
    assert run.returncode == 1, output(run)
    last = run.stdout.split("gate: FAILED:")[1].splitlines()[0]
    assert "1 of 2 figures" in last and "kernel/matmul/numpy/fwd+bwd (" in last, last
    assert "conv2d" not in last
    assert "| kernel/matmul/numpy/fwd+bwd | higher |" in run.stdout
    assert "SLOWER (measured 3x)" in run.stdout
    assert f"gate: base {base[:7]}" in run.stdout and "--base " in run.stdout
    assert gate_ab.git(repo, "worktree", "list").count("\n") == 0  # removed afterwards


@pytest.mark.slow
def test_ab_identical_trees_pass_and_a_planted_slowdown_in_head_fails(clone):
    repo, _ = clone
    only = ["--only", "kernel/matmul/numpy", "kernel/maxpool2d/torch", "cli/", "--repeats",
            "3"]
    same = run_gate("--base", "HEAD", *only, cwd=repo)
    assert same.returncode == 0, output(same)
    assert "gate: passed: 3 figures compared, none more than 1.5x worse than base" in same.stdout
    planted = run_gate("--base", "HEAD", *only, cwd=repo,
                       slowdown="kernel/matmul/numpy/fwd+bwd=2")
    assert planted.returncode == 1, output(planted)
    last = planted.stdout.split("gate: FAILED:")[1].splitlines()[0]
    assert "kernel/matmul/numpy/fwd+bwd (" in last and "maxpool" not in last, last


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_gate_removes_its_worktree_and_workers(clone, signum):
    repo, base = clone
    env = dict(os.environ, HARNESS_BENCH_THREADS="1")
    gate_run = subprocess.Popen([sys.executable, "-m", "benchmarks.gate", "--base", base,
                                 "--only", "kernel/"], cwd=repo, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                preexec_fn=default_sigint,
                                start_new_session=True)  # a process group, as in a terminal
    lines = []
    for line in gate_run.stdout:  # wait until it measures
        lines.append(line)
        if line.startswith("  kernel/"):
            break
    trees = gate_ab.git(repo, "worktree", "list", "--porcelain").count("worktree ")
    assert trees == 2, "".join(lines)
    os.killpg(gate_run.pid, signum)  # Ctrl-C signals the whole group
    lines += gate_run.stdout.readlines()
    assert gate_run.wait(timeout=60) != 0
    tree = Path("".join(lines).split("gate: base checked out in ")[1].split()[0])
    assert not tree.exists() and not tree.parent.exists()
    assert "KeyboardInterrupt" in "".join(lines)
    assert gate_ab.git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    alive = subprocess.run(["pgrep", "-g", str(gate_run.pid)], capture_output=True, text=True)
    assert alive.stdout == "", "workers left running"


@pytest.mark.slow
def test_the_worker_measures_the_old_gate_of_commit_936e544(tmp_path):
    old = "936e544"
    with gate_ab.worktree(ROOT, old) as tree:
        worker = gate_ab.Worker("base", tree, gate_ab.worker_env(tree, planted=False))
        try:
            figs = worker.figures()
            assert len(figs) == 44 and {f["needs"] for f in figs} == {None}
            assert worker.measure("kernel/matmul/numpy/fwd+bwd", 2) > 0.1
            with pytest.raises(gate_ab.MeasureError, match="KeyError"):
                worker.measure("no/such/figure", 2)
        finally:
            worker.close()
    assert not tree.exists()
