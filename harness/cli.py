"""The command line: `python -m harness run|report|check FILE [options]`.

Only argparse is imported here; each command imports its room when it runs (a deferred
import, so that `python -m harness --help` answers at once), and calls it with plain
arguments: the same functions serve Python callers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backends import BACKENDS  # a tuple; importing backends/ imports no framework

EPILOG = """examples:
  python -m harness run experiments/optimizers.yaml
  python -m harness run experiments/optimizers.yaml --set train.epochs=1 --set seeds=[0]
  python -m harness run experiments/optimizers.yaml --dry-run
  python -m harness run experiments/ --executor pool --workers 2   # every file of the folder
  python -m harness check experiments/optimizers.yaml --backend numpy --limit 1
  mlflow ui --backend-store-uri sqlite:///results/mlflow.db

exit codes: 0 all trials finished, 1 some trial failed or diverged, 2 bad config or usage,
130 interrupted"""


def _common(p: argparse.ArgumentParser, many: bool = False) -> None:
    p.add_argument("file", nargs="+" if many else None,
                   help="the experiment's YAML file, or a folder of them (each into its own "
                        "MLflow experiment)" + ("; two or more files: their reports side by "
                                                "side, in <results>/compare/" if many else ""))
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="override a dotted key, the value read as YAML (repeatable): "
                        "--set train.epochs=1 --set seeds=[0]")
    p.add_argument("--tracking-uri", metavar="URI",
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                        "sqlite:///<results>/mlflow.db)")
    p.add_argument("--results", metavar="DIR", default="results",
                   help="where tables and plots go (default: results)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-trial lines")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness", epilog=EPILOG, formatter_class=argparse.RawTextHelpFormatter,
        description="Benchmark and ablation harness for the building blocks of deep learning, "
                    "on NumPy, PyTorch and JAX.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="sweep an experiment, log to MLflow, write results/",
                         epilog=EPILOG, formatter_class=argparse.RawTextHelpFormatter)
    _common(run)
    run.add_argument("--dry-run", action="store_true", help="list the trials, run nothing")
    run.add_argument("--executor", choices=("local", "pool", "ray"), default="local",
                     help="local: one trial after another (default); pool: worker "
                          "processes; ray: a Ray task per trial")
    run.add_argument("--workers", type=int, metavar="N",
                     help="pool workers (default: the number of cores)")
    run.add_argument("--threads", type=int, metavar="N",
                     help="BLAS and torch threads per trial, local and pool (default: local "
                          "leaves the libraries' own; pool: cores // workers)")
    run.add_argument("--address", metavar="ADDR",
                     help="the Ray cluster to use (default: start a local one)")
    rep = sub.add_parser("report", help="tables, plots and claim verdicts, from MLflow alone",
                         formatter_class=argparse.RawTextHelpFormatter)
    _common(rep, many=True)
    rep.add_argument("--format", choices=("markdown", "latex", "csv"),
                     help="print the verdict table in this format (claims.md and claims.csv "
                          "are written either way)")
    rep.add_argument("--columns", metavar="A,B,...",
                     help="the table's columns, comma-separated, e.g. claim,verdict,diff,"
                          "p_holm (default: all; a wrong name lists them)")
    chk = sub.add_parser("check", help="gradient check, overfit one batch, parity with numpy",
                         formatter_class=argparse.RawTextHelpFormatter)
    chk.add_argument("file", help="the experiment's YAML file")
    chk.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                     help="override a dotted key, as for run (repeatable)")
    chk.add_argument("--backend", action="append", choices=BACKENDS,
                     help="check only this backend of the file's (repeatable)")
    chk.add_argument("--limit", type=int, metavar="N", help="only the first N sweep points")
    chk.add_argument("--all-seeds", action="store_true",
                     help="every seed of each sweep point (default: its first)")
    chk.add_argument("--only", action="append", choices=("gradient", "overfit", "parity"),
                     help="run only this check (repeatable)")
    chk.add_argument("--batch", type=int, default=8, metavar="N",
                     help="samples in the one batch (default 8)")
    chk.add_argument("--samples", type=int, default=5, metavar="K",
                     help="entries per tensor in the gradient check (default 5)")
    chk.add_argument("--steps", type=int, default=200, metavar="S",
                     help="overfit: the steps allowed (default 200)")
    chk.add_argument("--fraction", type=float, default=0.1, metavar="F",
                     help="overfit: the loss must fall below F x its start (default 0.1)")
    desc = sub.add_parser("describe", help="what a file can say: archs, tasks, optimizers, "
                                            "augment, metrics, or a dotted key",
                          formatter_class=argparse.RawTextHelpFormatter)
    desc.add_argument("topic", nargs="?", default=None,
                      help="archs, tasks, optimizers, augment, metrics, or a key such as "
                           "model.width (default: all topics)")
    desc.add_argument("--schema", action="store_true",
                      help="print a JSON Schema of the experiment file (for editors)")
    return p


def _columns() -> list[str]:
    from harness.reporting.tables import COLUMNS

    return list(COLUMNS)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for option in ("workers", "threads", "limit", "batch", "samples", "steps"):
        if getattr(args, option, None) is not None and getattr(args, option) < 1:
            print(f"--{option}: expected an integer >= 1", file=sys.stderr)
            return 2
    if getattr(args, "fraction", None) is not None and not 0 < args.fraction < 1:
        print("--fraction: expected a number in (0, 1)", file=sys.stderr)
        return 2
    if getattr(args, "threads", None) is not None and args.executor == "ray":
        print("--threads: applies to --executor local and pool; a Ray task runs with "
              "OMP_NUM_THREADS set to its CPUs (one per trial)", file=sys.stderr)
        return 2
    if args.command == "run":
        from harness.sweep.runner import RunOptions, run, run_folder

        return (run_folder if Path(args.file).is_dir() else run)(args.file, args.set, RunOptions(
            results=args.results, tracking_uri=args.tracking_uri, dry_run=args.dry_run,
            executor=args.executor, workers=args.workers, threads=args.threads,
            address=args.address, quiet=args.quiet))
    if args.command == "report":
        from harness.reporting.compare import compare
        from harness.reporting.report import ReportOptions, report, report_folder
        from harness.reporting.tables import check_columns

        columns = [c.strip() for c in args.columns.split(",")] if args.columns else None
        unknown = check_columns(columns or [])
        if unknown:
            print(f"--columns: unknown {', '.join(unknown)} (known: "
                  f"{', '.join(_columns())})", file=sys.stderr)
            return 2
        options = ReportOptions(results=args.results, tracking_uri=args.tracking_uri,
                                format=args.format, columns=columns)
        if len(args.file) > 1:
            return compare(args.file, args.set, options)
        judge = report_folder if Path(args.file[0]).is_dir() else report
        return judge(args.file[0], args.set, options)
    if args.command == "describe":
        import json

        from harness.config.describe import TOPICS, describe, json_schema

        if args.schema:
            print(json.dumps(json_schema(), indent=1))
            return 0
        try:
            print("\n\n".join(describe(t) for t in ([args.topic] if args.topic else TOPICS)))
        except KeyError as exc:
            print(f"describe: {exc.args[0]}", file=sys.stderr)
            return 2
        return 0
    if args.command == "check":
        from harness.debug.check import CHECKS, CheckOptions, check

        return check(args.file, args.set, CheckOptions(
            only=tuple(args.only or CHECKS), batch=args.batch, samples=args.samples,
            steps=args.steps, fraction=args.fraction, limit=args.limit,
            backends=tuple(args.backend or ()), all_seeds=args.all_seeds))
    return 2
