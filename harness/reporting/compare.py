"""`harness report A.yaml B.yaml`: two (or more) experiments' reports side by side.

Each file is reported as `report FILE` would (its own results/<name>/, judging what its
latest run ran), then <results>/compare/<a>-vs-<b>/ holds

    claims.md, claims.csv  every file's verdicts in one table, an `experiment` column first
    summary.csv            their summary.csv rows, likewise
    curves.png             their training-loss curves side by side, one panel per file
    val_curves.png         their validation curves, likewise

Nothing is re-judged across files: a claim is about one file's arms, and each verdict is
the one its own report gives.
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.config import ConfigErrors, load
from harness.errors import refuse
from harness.reporting import tables
from harness.reporting.report import ReportOptions, report


def compare(files, overrides=(), options: ReportOptions | None = None) -> int:
    """Report each file, then put them side by side; the worst of their exit codes."""
    options = options or ReportOptions()
    names, errors = [], []
    for f in files:
        if Path(f).is_dir():
            print(f"report: {f} is a folder; compare takes experiment files (report a "
                  f"folder alone for its one table)", file=sys.stderr)
            return 2
        try:
            names.append(load(f, list(overrides))[0].name)
        except ConfigErrors as exc:
            errors += exc.errors
    if errors:
        return refuse(errors)
    quiet = ReportOptions(results=options.results, tracking_uri=options.tracking_uri)
    codes = [report(f, overrides, quiet) for f in files]
    if max(codes) != 0:
        print("report: not every file could be reported; nothing compared", file=sys.stderr)
        return max(codes)
    results = Path(options.results)
    out = results / "compare" / "-vs-".join(names)
    out.mkdir(parents=True, exist_ok=True)
    recs = [r for n in names for r in tables.read_csv(results / n / "claims.csv")]
    tables.write_csv(recs, out / "claims.csv")
    (out / "claims.md").write_text(f"# {' against '.join(names)}\n\n"
                                   + tables.render(recs, list(tables.BRIEF)))
    _summaries([results / n / "summary.csv" for n in names], names, out / "summary.csv")
    for picture in ("curves.png", "val_curves.png"):
        _side_by_side([results / n / picture for n in names], names, out / picture)
    print(f"compared {', '.join(names)}; wrote {out}/", file=sys.stderr)
    print(tables.render(recs, options.columns or list(tables.BRIEF),
                        options.format or "markdown"), end="")
    return 0


def _summaries(paths, names, dest: Path) -> None:
    import pandas as pd  # deferred, as in report.py

    frames = [pd.read_csv(p).assign(experiment=n) for p, n in zip(paths, names)]
    both = pd.concat(frames, ignore_index=True)
    both[["experiment", *[c for c in both.columns if c != "experiment"]]].to_csv(dest,
                                                                                 index=False)


def _side_by_side(paths, names, dest: Path) -> None:
    """The files' pictures in one row, each titled by its experiment (as drawn, not
    redrawn: the axes are each report's own)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    shown = [(n, p) for n, p in zip(names, paths) if p.exists()]
    if not shown:
        return
    fig, axes = plt.subplots(1, len(shown), figsize=(6.4 * len(shown), 4.8), squeeze=False)
    for ax, (name, path) in zip(axes[0], shown):
        ax.imshow(mpimg.imread(path))
        ax.set_title(name)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(dest, dpi=110)
    plt.close(fig)
