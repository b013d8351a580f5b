"""The README's Python example runs as it stands (issue 17), in a scratch folder."""

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    text = (ROOT / "README.md").read_text()
    code = re.search(r"## From Python.*?```python\n(.*?)```", text, re.S).group(1)
    (tmp_path / "experiments").mkdir()
    os.symlink(ROOT / "experiments" / "optimizers.yaml",
               tmp_path / "experiments" / "optimizers.yaml")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 -- our own README
    assert namespace["code"] == 0
    trials = namespace["res"].trials
    assert len(trials) == 2 * 2 and set(trials["status"]) == {"finished"}
    assert trials["test/accuracy"].between(0, 1).all()
    assert set(namespace["verdicts"]["verdict"]) <= {"PASS", "FAIL", "INCONCLUSIVE"}
    assert len(namespace["verdicts"]) >= 1
    assert (tmp_path / "results" / "notebook.db").exists()
    assert "trials:" in capsys.readouterr().out
