"""The gate's A/B run: the base commit and HEAD measured on this machine, interleaved.

A fraction of the sgemm roofline is not machine-independent (a wider-vector CPU raises sgemm
far more than a pooling kernel or a small-MLP step: an Intel Xeon failed 15 of 44 figures
against a baseline taken on an AMD EPYC, issue 13), so the judge is not a committed number
but the base commit, measured here and now (asv's `continuous`, with the one environment CI
has). The base is checked out with `git worktree add --detach` into a temporary folder
(removed afterwards, also on an error or Ctrl-C); one long-lived worker process per tree
(benchmarks/gate_worker.py, PYTHONPATH and sys.path at its tree) measures figures on
request, and the driver alternates them, base then HEAD, `rounds` times per figure, so that
a change in the machine's load hits both. Each side's value is its best round (load only
ever makes a figure worse). A figure fails when HEAD is more than FACTOR worse than base;
a failing figure is measured again (A/B again) up to `retries` times and fails only if
every try says so.

Which base. `--base REV`, else $HARNESS_GATE_BASE, else the newest first-parent ancestor
of HEAD committed more than 3 hours before HEAD. Why 3 hours: a working session lasts at
most 3 h, so every commit a session lands is within 3 h of its last one; the newest commit
older than that is main as it stood before the session began, the tree the previous CI run
passed. CI runs in a fresh clone of main, whose last landed commit is HEAD there, so the
rule picks the same point. Without such a commit (a shallow clone, a young repository) the
gate says so and falls back to the committed baseline, labelled as such.

What fails besides SLOWER: a figure of base that HEAD no longer has ("DROPPED"), unless
gate.REMOVED names it with a reason; a figure either side cannot measure (an error, or a
NotImplementedError), unless the figure declares `needs="cuda"` (say) and this machine has
none, which is "skipped: needs cuda, this machine has none". A figure only HEAD has is
"new, not gated".
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HOURS = 3
BASE_ENV = "HARNESS_GATE_BASE"
WORKER = Path(__file__).resolve().parent / "gate_worker.py"


class BadBase(Exception):
    """A --base / $HARNESS_GATE_BASE that is not a commit (exit 2)."""


# ----------------------------------------------------------------------------- which base


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, ["git", *args], done.stdout,
                                            done.stderr)
    return done.stdout.strip()


@dataclass(frozen=True)
class Base:
    sha: str
    how: str  # why this commit


def pick_base(repo: Path, explicit: str | None = None, env=None) -> Base | None:
    """The commit to compare HEAD with (see the module's docstring), or None if the 3-hour
    rule finds none."""
    env = os.environ if env is None else env
    for rev, how in ((explicit, "--base {rev}"), (env.get(BASE_ENV), f"{BASE_ENV}={{rev}}")):
        if rev:
            try:
                sha = git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
            except subprocess.CalledProcessError:
                raise BadBase(f"{how.format(rev=rev)}: not a commit of {repo} (expected a "
                              f"revision such as HEAD~1, main or a hash)") from None
            return Base(sha, how.format(rev=rev))
    log = git(repo, "log", "--first-parent", "--format=%H %ct", "HEAD").splitlines()
    head_time = int(log[0].split()[1])
    for line in log[1:]:
        sha, when = line.split()
        if int(when) < head_time - HOURS * 3600:
            return Base(sha, f"the newest first-parent ancestor of HEAD committed more than "
                             f"{HOURS} h before it")
    return None


@contextlib.contextmanager
def worktree(repo: Path, sha: str):
    """`sha` checked out in a temporary folder, removed afterwards whatever happens."""
    tmp = Path(tempfile.mkdtemp(prefix="gate-base-"))
    path = tmp / "tree"
    try:
        git(repo, "worktree", "add", "--detach", "--quiet", str(path), sha)
        yield path
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(path)],
                       capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["git", "-C", str(repo), "worktree", "prune"], capture_output=True)


# ----------------------------------------------------------------------------- the workers


class MeasureError(Exception):
    pass


class Worker:
    """One tree's figures, measured in a long-lived process of their own."""

    def __init__(self, label: str, tree: Path, env: dict):
        self.label, self.tree, self.env = label, tree, env
        self.seconds = 0.0  # time spent measuring
        self._start()

    def _start(self):
        self.proc = subprocess.Popen([sys.executable, str(WORKER), str(self.tree)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     cwd=self.tree, env=self.env, text=True)

    def _ask(self, request: dict) -> dict:
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            rc = self.proc.wait()
            self._start()  # the next figure gets a fresh process
            raise MeasureError(f"the {self.label} worker died (exit {rc})")
        return json.loads(line)

    def figures(self) -> list[dict]:
        return self._ask({"op": "list"})["figures"]

    def measure(self, name: str, repeats: int) -> float:
        t0 = time.perf_counter()
        try:
            reply = self._ask({"op": "measure", "name": name, "repeats": repeats})
        finally:
            self.seconds += time.perf_counter() - t0
        if "error" in reply:
            raise MeasureError(reply["error"])
        return reply["value"]

    def close(self, kill: bool = False):
        if kill and self.proc.poll() is None:
            self.proc.kill()  # an interrupt: it may be in the middle of a measurement
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def worker_env(tree: Path, planted: bool) -> dict:
    """This process's environment with PYTHONPATH at `tree`; the planted slowdown
    ($HARNESS_GATE_SLOWDOWN) only on HEAD's side."""
    from .gate import SLOWDOWN_ENV

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tree), *filter(None, [env.get("PYTHONPATH")])])
    if not planted:
        env.pop(SLOWDOWN_ENV, None)
    return env


# ----------------------------------------------------------------------------- comparing


@dataclass
class ABRow:
    name: str
    better: str
    base: float | None = None
    head: float | None = None
    worse: float | None = None  # HEAD/base, oriented so that > 1 is worse
    verdict: str = "ok"
    fails: bool = False
    tries: int = 0


def worse_by(better: str, base: float, head: float) -> float:
    tiny = 1e-12
    if better == "higher":
        return max(base, tiny) / max(head, tiny)
    return max(head, tiny) / max(base, tiny)


def _try(row: ABRow, base, head, repeats: int, rounds: int, factor: float) -> None:
    """One A/B try of row's figure, A/B/A/B...; keeps the try with the smallest ratio."""
    keep = max if row.better == "higher" else min
    values = {"base": [], "HEAD": []}
    for _ in range(rounds):
        for label, side in (("base", base), ("HEAD", head)):
            try:
                values[label].append(side.measure(row.name, repeats))
            except Exception as exc:  # NotImplementedError included: not measured is a failure
                row.verdict, row.fails = f"FAILED: {label} cannot measure it: {exc}", True
                return
    b, h = keep(values["base"]), keep(values["HEAD"])
    worse = worse_by(row.better, b, h)
    row.tries += 1
    if row.worse is None or worse < row.worse:
        row.base, row.head, row.worse = b, h, worse
    row.fails = row.worse > factor
    row.verdict = "SLOWER" if row.fails else "ok"


def ab_rows(base, head, *, only=None, repeats=5, rounds=2, retries=2, factor=1.5,
            has=None, removed=None, log=print) -> list[ABRow]:
    """A row per figure of either side. `base` and `head` have .figures() (dicts with name,
    better, unit, needs) and .measure(name, repeats) -> float."""
    from .gate import REMOVED, machine_has

    has = has or machine_has
    removed = REMOVED if removed is None else removed
    pick = (lambda figs: {f["name"]: f for f in figs
                          if not only or f["name"].startswith(tuple(only))})
    in_base, in_head = pick(base.figures()), pick(head.figures())
    rows, measured = [], []
    for name in sorted(set(in_base) | set(in_head)):
        fig = in_head.get(name) or in_base[name]
        row = ABRow(name, fig["better"])
        rows.append(row)
        needs = fig.get("needs") or in_base.get(name, {}).get("needs")
        if name not in in_base:
            row.verdict = "new, not gated"
        elif name not in in_head:
            if name in removed:
                row.verdict = f"dropped: intentionally removed ({removed[name]})"
            else:
                row.verdict, row.fails = "DROPPED: not in HEAD, and not in gate.REMOVED", True
        elif needs and not has(needs):
            row.verdict = f"skipped: needs {needs}, this machine has none"
        else:
            t0 = time.perf_counter()
            _try(row, base, head, repeats, rounds, factor)
            measured.append(row)
            ratio = "-" if row.worse is None else f"{row.worse:.2f}x"
            log(f"  {name}: base {_fmt(row.base)}, HEAD {_fmt(row.head)}, HEAD/base {ratio} "
                f"{row.verdict} ({time.perf_counter() - t0:.1f} s)")
    for _ in range(retries):
        again = [r for r in measured if r.verdict == "SLOWER"]
        if not again:
            break
        log(f"gate: measuring again, A/B: {', '.join(r.name for r in again)}")
        for row in again:
            _try(row, base, head, repeats, rounds, factor)
    return rows


def _fmt(v):
    return "-" if v is None else f"{v:.4g}"


def ab_report(rows: list[ABRow], factor: float) -> str:
    lines = ["| figure | better | base | HEAD | HEAD/base (>1 worse) | verdict |",
             "|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (not r.fails, r.name)):
        worse = "-" if r.worse is None else f"{r.worse:.2f}x"
        again = f" (measured {r.tries}x)" if r.tries > 1 else ""
        lines.append(f"| {r.name} | {r.better} | {_fmt(r.base)} | {_fmt(r.head)} | {worse} "
                     f"| {r.verdict}{again} |")
    compared = [r for r in rows if r.worse is not None]
    failed = [r for r in rows if r.fails]
    counts = {word: sum(r.verdict.startswith(word) for r in rows)
              for word in ("new", "skipped", "dropped")}
    extra = ", ".join(f"{n} {w}" for w, n in counts.items() if n)
    extra = f" ({extra})" if extra else ""
    if failed:
        names = ", ".join(r.name + (f" ({r.worse:.2f}x)" if r.verdict == "SLOWER" else
                                    f" ({r.verdict.split(':')[0]})") for r in failed)
        lines.append(f"\ngate: FAILED: {len(failed)} of {len(rows)} figures{extra}: SLOWER "
                     f"means HEAD more than {factor}x worse than base: {names}")
    else:
        lines.append(f"\ngate: passed: {len(compared)} figure{'s' * (len(compared) != 1)} "
                     f"compared{extra}, none more than {factor}x worse than base")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- running


def _describe(repo: Path, rev: str) -> str:
    return git(repo, "log", "-1", "--format=%h %cd \"%<(60,trunc)%s\"",
               "--date=format:%Y-%m-%d %H:%M", rev).replace("  ", "").strip()


def machine_line() -> str:
    from backends.base import cpu_name

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{cpu_name()}, {os.cpu_count()} cores, load average {load} at start"


def run(args, repo: Path) -> int:
    """The gate's default: A/B against the base commit (falls back to the baseline)."""
    from . import gate

    t0 = time.perf_counter()
    try:
        base = pick_base(repo, args.base)
    except BadBase as exc:
        print(f"gate: {exc}", file=sys.stderr)
        return 2
    print(f"gate: {machine_line()}")
    if base is None:
        shallow = git(repo, "rev-parse", "--is-shallow-repository") == "true"
        print(f"gate: NO BASE COMMIT: no first-parent ancestor of HEAD was committed more than "
              f"{HOURS} h before it{' (this is a shallow clone)' if shallow else ''}; give "
              f"one with --base REV or ${BASE_ENV}.\ngate: FALLING BACK to the committed "
              f"baseline {gate.BASELINE.relative_to(gate.ROOT)}, a record of one machine, "
              f"NOT a like-with-like comparison")
        return gate.against_baseline(args)
    dirty = git(repo, "status", "--porcelain", "--untracked-files=no")
    print(f"gate: base {_describe(repo, base.sha)}, {base.how}\n"
          f"gate: HEAD {_describe(repo, 'HEAD')}, this tree ({repo}"
          f"{', with uncommitted changes' if dirty else ''})\n"
          f"gate: {args.repeats} samples per measurement, {args.rounds} A/B round(s) per "
          f"figure, factor {args.factor}; slowdowns planted in HEAD: "
          f"{gate._slowdowns() or 'none'}")
    previous = signal.signal(signal.SIGTERM, _interrupt)
    workers, done = [], False
    try:
        with worktree(repo, base.sha) as tree:
            print(f"gate: base checked out in {tree} (removed afterwards)", flush=True)
            try:
                workers.append(Worker("base", tree, worker_env(tree, planted=False)))
                workers.append(Worker("HEAD", repo, worker_env(repo, planted=True)))
                try:
                    rows = ab_rows(*workers, only=args.only, repeats=args.repeats,
                                   rounds=args.rounds, retries=args.retries,
                                   factor=args.factor)
                except MeasureError as exc:  # a worker that cannot even list its figures
                    print(f"gate: FAILED: {exc}")
                    return 1
                done = True
            finally:  # the workers go before their tree does
                for w in workers:
                    w.close(kill=not done)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not rows:
        print(f"gate: no figure matches {args.only}", file=sys.stderr)
        return 2
    print(ab_report(rows, args.factor))
    print(f"gate: {time.perf_counter() - t0:.0f} s in all; measuring base {workers[0].seconds:.0f}"
          f" s, HEAD {workers[1].seconds:.0f} s")
    return 1 if any(r.fails for r in rows) else 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")
