"""The verdict table as data, and its export: claims.csv, `report --format`, one table for all.

Each verdict becomes one record (a dict of COLUMNS), with the numbers raw (not rounded), so
that claims.csv can be read back and a chosen set of columns rendered as Markdown, LaTeX or
CSV:

    python -m harness report experiments/optimizers.yaml --format latex \\
        --columns claim,verdict,diff,p_holm

The Markdown of claims.md is harness/verdicts/table.py's; this module renders the same
records for the other formats and for the folder's table of every experiment.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np

from harness.verdicts.claims import matches, sides
from harness.verdicts.table import interval

# column -> (header, what it holds); the order is the default order
COLUMNS = {
    "experiment": ("experiment", "the experiment's name"),
    "claim": ("claim", "the claim in words"),
    "judged_on": ("judged on", "backend/device, or all"),
    "verdict": ("verdict", "PASS, FAIL or INCONCLUSIVE"),
    "a_mean": ("A mean", "arm A's mean over its finite seeds"),
    "a_std": ("A std", "... and their standard deviation"),
    "n_a": ("n A", "arm A's seeds (trials) judged"),
    "b_mean": ("B mean", "arm B's mean"),
    "b_std": ("B std", "... std"),
    "n_b": ("n B", "arm B's seeds judged"),
    "margin": ("margin", "by_at_least, or an equivalence's within"),
    "diff": ("A − B", "difference of the means"),
    "diff_low": ("A − B low", "its 95% interval, low end"),
    "diff_high": ("A − B high", "... high end"),
    "poi": ("P(A better)", "probability of improvement"),
    "poi_low": ("P low", "its bootstrap 95% interval, low end"),
    "poi_high": ("P high", "... high end"),
    "effect": ("A − B (95% CI)", "the difference with its interval, as one cell"),
    "poi_ci": ("P(A better) (95% CI)", "the probability of improvement with its interval"),
    "p": ("p", "one-sided p of the alternative"),
    "alternative": ("H1", "better, worse, within or outside"),
    "p_holm": ("Holm p", "p adjusted over the file's rows (Holm; "
                          "seeds until decided: p over its look's boundary, times alpha)"),
    "tuned": ("tuned", "the tuned values of arm A; of arm B"),
    "note": ("note", "what the verdict rests on"),
}
FORMATS = ("markdown", "latex", "csv")
BRIEF = ("experiment", "claim", "verdict", "a_mean", "b_mean", "effect", "poi_ci", "n_a",
         "n_b", "p_holm", "tuned")  # the folder table's columns


def _stats(values) -> tuple[float | None, float | None, int]:
    v = np.asarray(values, dtype=float)
    finite = v[np.isfinite(v)]
    if not len(finite):
        return None, None, len(v)
    return float(finite.mean()), float(finite.std(ddof=1)) if len(finite) > 1 else 0.0, len(v)


def _tuned(claim, rows: list[dict]) -> str:
    """'optimizer.lr=0.1; optimizer.lr=0.01': what tuning chose for each arm's trials."""
    out = []
    for side in sides(claim):
        chosen = sorted({r["tuned"] for r in rows
                         if r.get("tuned") and matches({**claim.where, **side}, r)})
        out.append(", ".join(chosen) or "-")
    return "" if out == ["-", "-"] else "; ".join(out)


def records(name: str, claims, verdicts, rows: list[dict]) -> list[dict]:
    """One record per verdict, every column of COLUMNS."""
    out = []
    for v in verdicts:
        (am, asd, an), (bm, bsd, bn) = _stats(v.better), _stats(v.than)
        e = v.effect
        out.append({
            "experiment": name, "claim": v.claim, "judged_on": v.group, "verdict": v.verdict,
            "a_mean": am, "a_std": asd, "n_a": an, "b_mean": bm, "b_std": bsd, "n_b": bn,
            "margin": v.margin, "diff": e and e.diff, "diff_low": e and e.low,
            "diff_high": e and e.high, "poi": e and e.poi, "poi_low": e and e.poi_low,
            "poi_high": e and e.poi_high, "effect": interval(e.diff, e.low, e.high) if e else "",
            "poi_ci": interval(e.poi, e.poi_low, e.poi_high, ".2f") if e else "",
            "p": v.p_value, "alternative": v.alternative,
            "p_holm": v.p_holm,
            "tuned": "" if claims[v.index].agree else _tuned(claims[v.index], rows),
            "note": v.note})
    return out


def check_columns(columns: list[str]) -> list[str]:
    """The unknown names among `columns`, each with its near miss, for an exit-2 message."""
    from harness.errors import suggest

    return [f"{c!r}{suggest(c, COLUMNS)}" for c in columns if c not in COLUMNS]


def _cell(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value) if fmt == "csv" else f"{value:.3g}"
    return str(value)


def _latex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"),
                 ("#", r"\#"), ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\~{}"),
                 ("^", r"\^{}"), ("−", "$-$"), ("±", r"$\pm$")):
        text = text.replace(a, b)
    return text


def render(recs: list[dict], columns: list[str] | None = None, fmt: str = "markdown") -> str:
    """The records' chosen columns (default: all) as a Markdown table, a LaTeX tabular
    (booktabs) or CSV with raw numbers."""
    columns = list(columns or COLUMNS)
    heads = [COLUMNS[c][0] for c in columns]
    cells = [[_cell(r.get(c), fmt) for c in columns] for r in recs]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(cells)
        return buf.getvalue()
    if fmt == "latex":
        lines = [r"\begin{tabular}{" + "l" * len(columns) + "}", r"\toprule",
                 " & ".join(_latex(h) for h in heads) + r" \\", r"\midrule"]
        lines += [" & ".join(_latex(c) for c in row) + r" \\" for row in cells]
        return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"]) + "\n"
    if fmt != "markdown":
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    esc = [[c.replace("|", r"\|") for c in row] for row in cells]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in esc]
    return "\n".join(lines) + "\n"


def write_csv(recs: list[dict], path) -> None:
    path.write_text(render(recs, fmt="csv"))


def read_csv(path) -> list[dict]:
    """claims.csv back into records, numbers as floats (None where empty)."""
    def value(column, text):
        if text == "" or column in ("experiment", "claim", "judged_on", "verdict",
                                    "alternative", "tuned", "note", "effect", "poi_ci"):
            return None if text == "" and column not in ("tuned", "note", "effect",
                                                         "poi_ci") else text
        return int(text) if column in ("n_a", "n_b") else float(text)

    with open(path, newline="") as f:
        return [{k: value(k, v) for k, v in row.items()} for row in csv.DictReader(f)]
