"""The driver's writer process (harness/sweep/writer.py): jobs run in order, once each; a
failing job surfaces in the driver as WriterError and nothing after it is written; a flush
(what an interrupt does before marking trials KILLED) writes everything queued before it."""

from __future__ import annotations

import pytest

from harness.sweep.writer import Writer, WriterError


def append(tracker, runs, path, line):
    """A job: one line appended to a file, standing for one trial's writes."""
    with open(path, "a") as f:
        f.write(f"{line}\n")
    return line


def fail(tracker, runs, why):
    raise RuntimeError(why)


def remember(tracker, runs, key, value):
    runs[key] = value  # the writer's state between jobs (a trial's open run id)


def recall(tracker, runs, key):
    return runs.pop(key)


@pytest.fixture
def writer(tmp_path):
    w = Writer(f"sqlite:///{tmp_path / 'm.db'}", "writer-test", {})
    yield w
    w.stop()


def test_jobs_run_once_in_order_and_callbacks_in_the_driver(tmp_path, writer):
    out, seen = tmp_path / "out.txt", []
    for i in range(50):
        writer.submit(append, str(out), i, then=seen.append)
    writer.submit(remember, "trial", "run-1")
    writer.submit(recall, "trial", then=seen.append)
    writer.flush()
    assert out.read_text().split() == [str(i) for i in range(50)]
    assert seen == [*range(50), "run-1"]


def test_an_error_surfaces_and_nothing_after_it_is_written(tmp_path, writer):
    out, seen = tmp_path / "out.txt", []
    for i in range(3):
        writer.submit(append, str(out), i, then=seen.append)
    writer.submit(fail, "the store is gone")
    for i in range(3, 6):
        writer.submit(append, str(out), i, then=seen.append)
    with pytest.raises(WriterError, match="the store is gone"):
        writer.flush()
    assert out.read_text().split() == ["0", "1", "2"]  # none lost, none twice, none after
    assert seen == [0, 1, 2]
    with pytest.raises(WriterError):  # and the next submit says so too
        writer.submit(append, str(out), 9)


def test_stop_writes_what_was_queued_and_a_dead_writer_is_reported(tmp_path, writer):
    out = tmp_path / "out.txt"
    for i in range(20):
        writer.submit(append, str(out), i)
    writer.stop()  # what an interrupted driver does after its flush
    assert out.read_text().split() == [str(i) for i in range(20)]
    writer.submit(append, str(out), 99)
    with pytest.raises(WriterError, match="died"):
        writer.flush()
