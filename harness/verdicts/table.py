"""claims.md: one row per verdict, readable as Markdown and as printed by `harness report`."""

from __future__ import annotations

import numpy as np

HEADER = ("| claim | judged on | A: mean ± std | B: mean ± std | margin | A − B (95% CI) | "
          "P(A better) (95% CI) | p (H1) | Holm p | verdict | note |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")
LEGEND = """\
p (H1): one-sided, with its alternative in brackets: better, the claim holds by its margin
(shown on PASS and INCONCLUSIVE); worse, it falls short of its margin (on FAIL); for an
equivalence, within, the difference lies inside ±margin (TOST), or outside it. Empty where
no test was needed: no spread over seeds, or a side diverged on every seed.

Holm p: the p-value adjusted by Holm's step-down over every tested row of the file (Holm
1979), each row's hypothesis the direction its data favour; the verdict is PASS or FAIL only
if the adjusted p is at most the claim's alpha. In a file whose seeds run until decided
(`seeds: {min, max}`), the rule's group-sequential Holm has no single adjusted p; the column
shows the row's p over the boundary it was held to at its last look, times alpha, which is
likewise at most alpha exactly where the rule decided it.

A is the claim's first configuration (`better:`, or the first of `equivalent:`), B the
other. A − B: the difference of the means over seeds, in the metric's units, with Welch's
95% interval (the paired t interval of the per-seed differences for a claim marked
"(paired)", the percentile bootstrap's for `test: bootstrap`); empty where a seed diverged.
P(A better): the probability that a seed of A beats a seed of B in the metric's sense (lower
is better for losses), ties counted half, with a stratified bootstrap 95% interval
(Agarwal et al. 2021)."""


def ms(values) -> str:
    """'mean ± std (n=k)' over the seeds with a finite value; diverged (inf) and missing
    (NaN) seeds are counted: '0.55 ± 0.071 (n=3, 1 diverged)', 'diverged (n=3)'."""
    if not values:
        return "none"
    v = np.asarray(values, dtype=float)
    finite = v[np.isfinite(v)]
    counts = {"diverged": int(np.isinf(v).sum()), "missing": int(np.isnan(v).sum())}
    bad = [f"{n} {what}" for what, n in counts.items() if n]
    if not len(finite):
        return f"{' and '.join(what for what, n in counts.items() if n)} (n={len(v)})"
    std = finite.std(ddof=1) if len(finite) > 1 else 0.0
    return f"{finite.mean():.4g} ± {std:.2g} (n={', '.join([str(len(v)), *bad])})"


def interval(point, low, high, digits: str = ".3g") -> str:
    """'0.029 [0.009, 0.049]', the point alone without an interval, or '' without a point."""
    if point is None:
        return ""
    if low is None:
        return f"{point:{digits}}"
    return f"{point:{digits}} [{low:{digits}}, {high:{digits}}]"


def row(v) -> str:
    """One Markdown row of a claims.Verdict."""
    p = "" if v.p_value is None else f"{v.p_value:.3g} ({v.alternative})"
    holm = "" if v.p_holm is None else f"{v.p_holm:.3g}"
    margin = f"±{v.margin:g}" if v.kind == "equivalent" else f"{v.margin:g}"
    e = v.effect
    diff = "" if e is None else interval(e.diff, e.low, e.high)
    poi = "" if e is None else interval(e.poi, e.poi_low, e.poi_high, ".2f")
    text = (f"| {v.claim} | {v.group} | {ms(v.better)} | {ms(v.than)} | {margin} | {diff} | "
            f"{poi} | {p} | {holm} | **{v.verdict}** | {v.note} |")
    if " on target/" in v.claim:  # time to target: inf is a target never reached, the worst
        text = text.replace("diverged", "never reached")
    return text


def write_markdown(verdicts, path) -> str:
    """claims.md of these verdicts; returns the text after its title, as `report` prints."""
    text = "\n".join([HEADER, *(row(v) for v in verdicts)]) + f"\n\n{LEGEND}\n"
    path.write_text(f"# Claims\n\n{text}")
    return text
