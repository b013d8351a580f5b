"""`harness report`: rebuild results/<name>/ from MLflow alone (SPEC 4.6).

    trials.csv    one row per trial of the file's grid: config, final metrics, status
    summary.csv   mean, std and count over seeds per configuration, backend and device
    curves.png    training loss per step, one line per sweep value with a band over seeds
    val_curves.png  the validation metric per epoch, likewise
    final.png     the final validation metric per sweep value and backend, with error bars
    throughput.png  training samples/s per backend and sweep value
    claims.md     the verdict on each `expect:` claim, also printed

Trials of the grid that the store lacks are listed as missing; FAILED and diverged trials
are kept in every table and counted on the plots, never silently dropped.
"""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import backends
from backends.optim import OptimizerSpec
from harness.config import ConfigErrors, Trial, load
from harness.config.tuning import combinations, describe
from harness.data.tasks import TASKS
from harness.draw.curves import curves, finals, sensitivity, short, throughput
from harness.draw.layers import draw as draw_layers
from harness.draw.volumes import slices, surfaces
from harness.errors import refuse
from harness.names import LAYERS_TAG, OVERRIDES_TAG, TRIAL_TAG, parse_diag
from harness.reporting import tables
from harness.sweep import rounds
from harness.sweep.results import TrialsTable
from harness.sweep.tracking import Tracker, default_uri
from harness.sweep.train import dataset, model_for
from harness.sweep.tuning import choose, tuned, tuning_trials
from harness.verdicts.claims import evaluate_claims, write_markdown
from harness.verdicts.sequential import replay

STATUSES = ("finished", "diverged", "failed", "killed", "missing")


def latest_runs(tracker, trials) -> dict[str, object]:
    """trial hash -> its run: the FINISHED one if any, else the most recent."""
    wanted = {t.hash for t in trials}
    best: dict[str, object] = {}
    for run in sorted(tracker.runs(), key=lambda r: r.info.start_time or 0):
        h = run.data.tags.get(TRIAL_TAG)
        if h not in wanted:
            continue
        if h in best and best[h].info.status == "FINISHED" and run.info.status != "FINISHED":
            continue
        best[h] = run
    return best


def latest_overrides(tracker, file) -> tuple[object, list[str]]:
    """The latest `run` of `file` in the store (its parent run, or None) and the --set list
    it ran with, as recorded on that parent."""
    latest = tracker.latest_parent(str(file))
    return latest, json.loads(latest.data.tags.get(OVERRIDES_TAG, "[]")) if latest else []


def histories(tracker, runs: dict, keys: tuple[str, ...]) -> dict[str, dict[str, list]]:
    """run hash -> key -> [(step, value)] from MLflow's metric history."""
    return {h: {k: tracker.history(run.info.run_id, k) for k in keys} for h, run in runs.items()}


def summarise(rows: list[dict]):
    """mean, std and count over seeds of every metric, per point, backend and device."""
    import pandas as pd  # deferred: ~0.5 s, only summaries need it

    df = pd.DataFrame(rows)
    keys = ["point", "backend", "device"]
    metrics = [c for c in df.columns if "/" in c and not c.startswith("diag/")]  # per layer
    for c in metrics:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    groups = df.groupby(keys, sort=False)
    if metrics:
        out = groups[metrics].agg(["mean", "std", "count"])
        out.columns = [f"{m} {stat}" for m, stat in out.columns]
    else:
        out = groups.size().to_frame("trials")
    counts = df.pivot_table(index=keys, columns="status", values="hash", aggfunc="count",
                            fill_value=0, sort=False).reindex(out.index, fill_value=0)
    for status in STATUSES:
        out[f"n_{status}"] = counts[status].astype(int) if status in counts else 0
    return out.reset_index()


@dataclass(frozen=True)
class ReportOptions:
    """Where `harness report` reads and writes; the CLI's flags, with its defaults."""

    results: str | Path = "results"  # writes <results>/<name>/
    tracking_uri: str | None = None  # default: $MLFLOW_TRACKING_URI, else the results' sqlite
    format: str | None = None  # print the verdict table as markdown, latex or csv
    columns: list[str] | None = None  # ... these columns of harness/reporting/tables.py


def report(file, overrides=(), options: ReportOptions = ReportOptions()) -> int:
    """Tables, plots and claims.md of an experiment file from MLflow; the exit code.

    Without `overrides` it judges what the latest `run` of the file ran: that run's --set
    list, recorded on its parent run; with them, the grid they make. If the store has no run
    of that grid, nothing is written (exit 1): a table is never replaced by a poorer one."""
    try:
        exp, trials = load(file, list(overrides))
    except ConfigErrors as exc:
        return refuse(exc.errors)
    args = options
    results = Path(args.results)
    uri = args.tracking_uri or default_uri(results)
    tracker = Tracker(uri, exp.name)
    if not overrides:
        latest, ran = latest_overrides(tracker, file)
        if ran:
            try:
                exp, trials = load(file, ran)
            except ConfigErrors as exc:
                return refuse(exc.errors)
        said = " ".join(f"--set {shlex.quote(o)}" for o in ran) or "no --set"
        if latest is not None:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(latest.info.start_time / 1e3))
            print(f"report: judging what the latest run of {file} ran ({said}, {when}); pass "
                  "--set to judge another grid", file=sys.stderr)
    looked_for = tuning_trials(trials)[0] + trials if exp.tune else trials
    if not latest_runs(tracker, looked_for):
        shown = "\n".join(f"  {t.hash}  {t.label}" for t in looked_for[:5])
        more = f"\n  ... and {len(looked_for) - 5} more" if len(looked_for) > 5 else ""
        print(f"report: no run in {uri} matches any of the {len(looked_for)} trials of {file}"
              f"{' with ' + ' '.join(overrides) if overrides else ''}; nothing written. "
              f"It looked for:\n{shown}{more}", file=sys.stderr)
        return 1
    out = results / exp.name
    tuning_text = ""
    if exp.tune:
        trials, tuning_text = _tuned(tracker, trials, out)
    if exp.seed_rounds:  # seeds until decided: only the seeds the rule asked for ran
        plan = rounds.plan(exp)
        first = exp.seed_rounds.first + plan.looks[0]  # the seeds every arm runs
        candidates = rounds.all_seeds(trials, plan)
        found = latest_runs(tracker, candidates)
        trials = [t for t in candidates if t.seed < first or t.hash in found]
    runs = latest_runs(tracker, trials)
    table = TrialsTable.from_store(out / "trials.csv", trials, runs)
    table.write()
    rows = [table.rows[t.hash] for t in trials]
    if exp.tune:  # what tuning chose, on each final trial's row, for the verdict table
        knobs = sorted({k for c in combinations(exp.tune) for k in c})
        rows = [{**r, "tuned": describe({k: t.point[k] for k in knobs if k in t.point})}
                for r, t in zip(rows, trials)]
    summary = summarise(rows)
    summary.to_csv(out / "summary.csv", index=False)

    metric = TASKS[exp.task.name].metric
    hist = histories(tracker, runs, ("train/loss", metric))
    by_trial = {t.hash: t for t in trials}
    curves(hist, by_trial, rows, "train/loss", out / "curves.png", f"{exp.name}: training loss")
    curves(hist, by_trial, rows, metric, out / "val_curves.png", f"{exp.name}: {metric}")
    finals(summary, metric, out / "final.png", f"{exp.name}: final {metric}")
    throughput(summary, out / "throughput.png", f"{exp.name}: training throughput")
    _extra_plots(exp, trials, runs, tracker, out)

    if exp.expect and exp.seed_rounds:  # the looks the runner took, replayed
        verdicts = replay(rounds.plan(exp), exp.expect, rows)
    else:
        verdicts = evaluate_claims(exp.expect, rows) if exp.expect else []
    recs = tables.records(exp.name, exp.expect, verdicts, rows)
    tables.write_csv(recs, out / "claims.csv")
    if verdicts:
        text = write_markdown(verdicts, out / "claims.md")
    else:  # still written, so that every experiment's results hold the same files
        text = ""
        (out / "claims.md").write_text("# Claims\n\nThis experiment states none (its "
                                       "`expect:` is empty): read its plots.\n")
    if tuning_text:
        with open(out / "claims.md", "a") as f:
            f.write("\n" + tuning_text)
        text = f"{text}\n{tuning_text}" if text else tuning_text
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    print(f"{exp.name}: {len(rows)} trials ({', '.join(f'{n} {s}' for s, n in counts.items() if n)}"
          f"); wrote {out}/", file=sys.stderr)
    if options.format:
        print(tables.render(recs, options.columns, options.format), end="")
    elif text:
        print(text)
    return 0


def _tuned(tracker, trials: list[Trial], out: Path) -> tuple[list[Trial], str]:
    """The final trials with each arm's tuned values, chosen from the store's tuning runs by
    the runner's own rule (harness/sweep/tuning.py); tuning.csv, sensitivity.png and the
    markdown table of what was chosen."""
    tuning, where = tuning_trials(trials)
    runs = latest_runs(tracker, tuning)
    table = TrialsTable.from_store(out / "tuning.csv", tuning, runs)
    table.write()
    choices = choose(tuning, where, table.rows)
    tune = trials[0].experiment.tune
    sensitivity({f"{a[0]} ({a[1]})": c.scores for a, c in choices.items()}, tune.metric,
                out / "sensitivity.png", f"{out.name}: {tune.metric} against the tuned values "
                f"(mean over tuning seeds {list(tune.seeds)})")
    lines = ["## Tuned values", "",
             f"Each arm's values chosen on {tune.metric} (the final value, mean over the "
             f"tuning seeds {', '.join(map(str, tune.seeds))}; never on test), as "
             "harness/sweep/tuning.py chooses them:", "",
             "| arm | backend | chosen | score | tried |", "|---|---|---|---|---|"]
    for (point, backend, device), c in choices.items():
        tried = ", ".join(f"{describe(v)}: {s:.4g}" for v, s, _ in c.scores)
        best = "-" if c.values is None else next(f"{s:.4g}" for v, s, _ in c.scores
                                                 if v == c.values)
        lines.append(f"| {point} | {backend}/{device} | {c.describe()} | {best} | {tried} |")
    return tuned(trials, choices), "\n".join(lines) + "\n"


def _extra_plots(exp, trials, runs, tracker, out: Path) -> None:
    """Hook for task-specific pictures (3D slices) and diagnostics: with train.diag_every
    set, harness/draw/layers.py's diagnostics.png and diag_layers.png."""
    if exp.train.diag_every or any(t.experiment.train.diag_every for t in trials):
        draw_layers(diagnostics(tracker, trials, runs), out, exp.name)
    if exp.task.name == "sdf":
        _sdf_pictures(trials, runs, tracker, out)


def _sdf_pictures(trials, runs, tracker, out: Path, scenes: int = 3, points: int = 4) -> None:
    """Slices and surfaces of validation scenes as each sweep point's trial predicts them
    (up to `points` of them, side by side), from each run's final parameters (params.npz),
    predicted by the NumPy reference. One seed for all, the one finished at the most
    points: the validation scenes depend on the seed."""
    done = [t for t in trials if t.hash in runs and runs[t.hash].info.status == "FINISHED"]
    if not done:
        return
    seeds = sorted({t.seed for t in done})
    seed = max(seeds, key=lambda s: (len({t.point_label for t in done if t.seed == s}), -s))
    chosen: dict[str, Trial] = {}
    for t in done:
        if t.seed == seed and len(chosen) < points:
            chosen.setdefault(t.point_label, t)
    preds = {}
    for label, t in chosen.items():  # short labels, unless two of them collide
        name = short(label) if short(label) not in preds else label
        preds[name] = _predict(t, runs[t.hash], tracker, scenes)
    t = next(iter(chosen.values()))
    data = dataset(t.config["task"], seed)
    x, y = data.x_val[:scenes], data.y_val[:scenes]
    slices(x, preds, y, out / "slices.png", f"{out.name}: validation scenes, seed {seed}")
    surfaces({k: v[0] for k, v in preds.items()}, y[0], out / "surfaces.png",
             f"{out.name}: predicted and true surface of validation scene 0, seed {seed}")


def _predict(t, run, tracker, scenes: int) -> np.ndarray:
    """The trial's predictions of the first validation scenes, (scenes, 1, D, H, W)."""
    with tempfile.TemporaryDirectory() as tmp:
        arrays = dict(np.load(tracker.download(run.info.run_id, "params.npz", tmp)))
    data = dataset(t.config["task"], t.seed)
    spec = model_for(t, data)
    shapes, buffer_shapes = backends.spec.param_shapes(spec)
    trainer = backends.load("numpy").build(
        spec, {k: arrays[k] for k in shapes}, {k: arrays[k] for k in buffer_shapes},
        OptimizerSpec(name="sgd", lr=1.0))
    return trainer.forward(data.x_val[:scenes])


def diagnostics(tracker, trials, runs) -> list[tuple[object, list[str], dict]]:
    """[(trial, layers in forward order, {(layer, quantity): [(step, value)]})], one per sweep
    point, in grid order: the first trial of each point that logged diagnostics. The order
    is the run's `harness.layers` tag (written by the run, so that no model is built here)."""
    chosen = {}
    for t in trials:
        run = runs.get(t.hash)
        if run is None or t.point_label in chosen:
            continue
        keys = [k for k in run.data.metrics if parse_diag(k)]
        if keys:
            chosen[t.point_label] = (t, run, keys)
    out = []
    for t, run, keys in chosen.values():
        series = {parse_diag(k): sorted(tracker.history(run.info.run_id, k)) for k in keys}
        order = [p for p in run.data.tags.get(LAYERS_TAG, "").split(",") if p]
        out.append((t, order, series))
    return out


def report_folder(folder, overrides=(), options: ReportOptions = ReportOptions()) -> int:
    """`report` on every experiment file of a folder, then one verdict table for all:
    <results>/claims.md (a count per experiment, one row per claim, then each experiment's
    claims.md) and <results>/claims.csv."""
    files = sorted(Path(folder).glob("*.yaml"))
    if not files:
        print(f"{folder}: no *.yaml experiment file", file=sys.stderr)
        return 2
    quiet = ReportOptions(results=options.results, tracking_uri=options.tracking_uri)
    codes, sections, counts, recs = {}, [], [], []
    for f in files:
        codes[f.name] = report(f, overrides, quiet)
        try:
            name = load(f, list(overrides))[0].name
        except ConfigErrors:
            continue
        claims = Path(options.results) / name / "claims.md"
        if codes[f.name] != 0 or not claims.exists():
            continue
        mine = tables.read_csv(claims.with_suffix(".csv"))
        recs += mine
        counts.append((name, *(sum(r["verdict"] == v for r in mine)
                               for v in ("PASS", "FAIL", "INCONCLUSIVE"))))
        text = claims.read_text()
        body = text.split("\n", 1)[1] if text.startswith("# ") else text
        sections.append(f"## {name} ({f})\n{body}")
    lines = ["# Claims of every experiment", "", f"From `python -m harness report {folder}`.",
             "", "| experiment | PASS | FAIL | INCONCLUSIVE |", "|---|---|---|---|"]
    lines += [f"| {n} | {p} | {fl} | {i} |" for n, p, fl, i in counts]
    total = [sum(c[k] for c in counts) for k in (1, 2, 3)]
    lines += [f"| all | {total[0]} | {total[1]} | {total[2]} |", "",
              "Every claim: A and B are the means over seeds (n A, n B seeds), A − B their "
              "difference with its 95% interval (paired for a claim marked so), P(A "
              "better) the probability of improvement with its bootstrap interval, Holm p "
              "the p-value adjusted over the claims of its file, tuned what tuning chose "
              "for A; for B; each file's section below has the stds, raw p and notes.", "",
              tables.render(recs, list(tables.BRIEF))]
    out = Path(options.results) / "claims.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n" + "\n".join(sections))
    tables.write_csv(recs, out.with_suffix(".csv"))
    print(f"{folder}: {len(files)} experiments; PASS {total[0]}, FAIL {total[1]}, "
          f"INCONCLUSIVE {total[2]}; wrote {out}", file=sys.stderr)
    if options.format:
        print(tables.render(recs, options.columns or list(tables.BRIEF), options.format),
              end="")
    return max(codes.values())
