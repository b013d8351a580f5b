"""Progress output: a bar on a terminal, one line per finished trial in a log (issue 13,
item 9: with stderr a pipe, tqdm wrote a carriage-return update per epoch)."""

import os
import pty
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SWEEP = """\
name: progress
task: {name: mario}
model: {arch: mlp, depth: 1, width: 8}
optimizer: {name: sgd, lr: 0.01}
train: {epochs: 4, batch_size: 64}
backends: [numpy]
seeds: [0, 1, 2]
"""


def _command(tmp: Path) -> list[str]:
    f = tmp / "progress.yaml"
    f.write_text(SWEEP)
    return [sys.executable, "-m", "harness", "run", str(f), "--results", str(tmp / "results"),
            "--tracking-uri", f"sqlite:///{tmp / 'mlflow.db'}"]


def test_a_log_gets_one_line_per_trial_and_no_bar(tmp_path):
    proc = subprocess.run(_command(tmp_path), capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr, "a bar update in a log"
    trial_lines = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    assert [line[:5] for line in trial_lines] == ["[1/3]", "[2/3]", "[3/3]"], proc.stderr
    assert all("FINISHED" in line for line in trial_lines)
    assert "epoch" not in proc.stderr  # the bar's per-epoch postfix never reaches a log


def test_a_terminal_gets_the_bar(tmp_path):
    # stderr (and stdout) a pseudo-terminal, as when a user types the command
    leader, follower = pty.openpty()
    proc = subprocess.Popen(_command(tmp_path), stdin=subprocess.DEVNULL, stdout=follower,
                            stderr=follower, cwd=ROOT)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait(timeout=300) == 0, out.decode(errors="replace")
    text = out.decode(errors="replace")
    assert "\r" in text and ("trial/s" in text or "s/trial" in text), text
    assert "3/3" in text and "FINISHED" in text


def test_quiet_prints_no_progress(tmp_path):
    proc = subprocess.run([*_command(tmp_path), "--quiet"], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "FINISHED" not in proc.stderr and "\r" not in proc.stderr
