"""MLflow, exactly as SPEC 4.5 says: one experiment per `name`, a parent run per invocation,
a child run per trial, step metrics written in batches off the training step.

The driver is the one writer: with a local pool the workers hand their records back and
the driver logs them, since SQLite takes one writer at a time. MLflow never sets KILLED by
itself and leaves a killed run RUNNING, so `close_stale` marks RUNNING children of the
experiment KILLED before a re-run starts (one invocation per experiment and store at a time).
mlflow is imported here only, lazily: `import harness` stays fast.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import platform
import shutil
import socket
import subprocess
import time
from importlib import metadata
from pathlib import Path

from backends.base import cache_dir
from harness.config.expand import filled, flatten
from harness.names import (
    FILE_TAG,
    HOST_TAG,
    KIND_TAG,
    PARENT_TAG,
    PHASE_TAG,
    POINT_TAG,
    STATUS_TAG,
    TRIAL_TAG,
    VERSION_TAG,
)

BATCH = 1000  # MLflow's cap on metrics (and on all entities) per log_batch call
PARAM_BATCH = 100  # ... on params, and on tags


def default_uri(results: str | Path) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else sqlite:///<results>/mlflow.db."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(results) / 'mlflow.db'}"


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def new_store(uri: str) -> bool:
    """A SQLite store whose file does not exist yet: nothing in it is finished or running,
    so the driver need not open it (import mlflow, create its tables: 3-5 s) before the
    first trial; the writer process creates it meanwhile."""
    path = _sqlite_path(uri)
    return path is not None and not path.exists()


def library_versions() -> dict[str, str]:
    """Versions from package metadata: importing torch or jax to ask would cost seconds."""
    out = {"python": platform.python_version()}
    for pkg in ("numpy", "torch", "jax", "jaxlib", "optax", "mlflow"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def context_tags() -> dict[str, str]:
    tags = {f"{VERSION_TAG}{k}": v for k, v in library_versions().items()}
    tags[HOST_TAG] = socket.gethostname()
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


class TrackingUnavailable(RuntimeError):
    """The tracking store cannot be reached; nothing was written."""


class _Retrying:
    """MlflowClient with SQLite's transient 'database is locked' retried, with backoff, for
    up to a minute: several drivers may share one store (SPEC 6: 8 writers at once)."""

    def __init__(self, client, patience_s: float = 60.0):
        self._client, self._patience = client, patience_s

    def __getattr__(self, name):
        method = getattr(self._client, name)

        def call(*args, **kwargs):
            deadline, pause = time.monotonic() + self._patience, 0.05
            while True:
                try:
                    return method(*args, **kwargs)
                except Exception as exc:  # noqa: BLE001 -- only 'locked' is retried
                    if "database is locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(pause)
                    pause = min(pause * 2, 2.0)

        return call


@contextlib.contextmanager
def _store_lock(path: Path | None):
    """One process at a time creates a fresh SQLite store's tables and experiments."""
    if path is None:
        yield
        return
    with open(path.with_name(path.name + ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _template() -> Path:
    """This machine's empty store of the installed MLflow's schema, in the data cache
    (`$HARNESS_CACHE`, else ~/.cache/harness): a new store is a copy
    (0.7 s to open) instead of MLflow's ~50 alembic migrations (2-3 s of CPU, on the
    critical path of a short sweep). Made by MLflow itself, the first time, and kept."""
    return cache_dir() / f"mlflow-{metadata.version('mlflow')}-empty.db"


def _copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f"{dst.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)  # atomic: no reader sees half a database


def _from_template(path: Path) -> None:
    """A new store as a copy of the template, if there is one (under the store's lock)."""
    try:
        if _template().exists():
            _copy(_template(), path)
    except OSError:  # no cache to read: MLflow creates the tables itself
        pass


def _keep_template(path: Path) -> None:
    """A store just made, before anything is written to it: the template, if none yet."""
    try:
        if not _template().exists():
            _template().parent.mkdir(parents=True, exist_ok=True)
            _copy(path, _template())
    except OSError:  # a read-only home: every new store pays the migrations
        pass


class Tracker:
    """The driver's handle on one MLflow experiment."""

    def __init__(self, uri: str, experiment: str, context: dict | None = None):
        # bounded retries against a tracking server that is down, unless the user set them
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        from mlflow.tracking import MlflowClient  # deferred: mlflow takes ~1 s to import

        for name in ("mlflow", "alembic"):  # their INFO lines would break the progress bar
            logging.getLogger(name).setLevel(logging.WARNING)
        path = _sqlite_path(uri)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.uri = uri
        self.experiment = experiment
        # on the parent and every child: versions, host, commit (the driver's, if given)
        self.context = context_tags() if context is None else context
        try:
            with _store_lock(path):
                created = path is not None and not path.exists()
                if created:
                    _from_template(path)
                self.client = _Retrying(MlflowClient(tracking_uri=uri))
                if created:
                    _keep_template(path)
                self._open(experiment, path)
        except Exception as exc:
            if path is not None:  # a local store's errors are what they say
                raise
            raise TrackingUnavailable(f"tracking server {uri} did not answer: "
                                      f"{str(exc).splitlines()[0][:300]}") from None

    def _open(self, experiment: str, path: Path | None) -> None:
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            location = None
            if path is not None:  # keep artifacts beside the database, not in ./mlruns
                location = (path.parent.resolve() / "mlartifacts" / experiment).as_uri()
            # the kind makes MLflow 3's UI open the experiment on its training runs table
            try:
                self.experiment_id = self.client.create_experiment(
                    experiment, artifact_location=location,
                    tags={"mlflow.experimentKind": "custom_model_development"})
            except Exception as exc:  # noqa: BLE001 -- another driver created it first
                if "already exists" not in str(exc):
                    raise
                self.experiment_id = self.client.get_experiment_by_name(
                    experiment).experiment_id
        else:
            self.experiment_id = found.experiment_id

    # ------------------------------------------------------------------ reading

    def runs(self, status: str | None = None) -> list:
        filt = f"attributes.status = '{status}'" if status else ""
        out, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string=filt,
                                           max_results=1000, page_token=token)
            out += list(page)
            token = page.token
            if not token:
                return out

    def finished(self) -> dict[str, object]:
        """trial hash -> its FINISHED run (the latest, should there be more than one)."""
        done = {}
        for run in sorted(self.runs("FINISHED"), key=lambda r: r.info.start_time or 0):
            trial = run.data.tags.get(TRIAL_TAG)
            if trial:
                done[trial] = run
        return done

    def close_stale(self) -> int:
        """Mark RUNNING runs of this experiment KILLED: left by a killed invocation."""
        stale = self.runs("RUNNING")
        for run in stale:
            self.client.set_tag(run.info.run_id, STATUS_TAG, "killed")
            self.client.set_terminated(run.info.run_id, "KILLED")
        return len(stale)

    # ------------------------------------------------------------------ writing

    def start_parent(self, name: str, tags: dict[str, str]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={**self.context, **tags, KIND_TAG: "parent"})
        return run.info.run_id

    def start_trial(self, parent_id: str, trial, tags: dict[str, str],
                    start_time: int | None = None, rows=()) -> str:
        """The trial's run, with every tag given, its params, and `rows` of metrics (a trial
        that has ended elsewhere logs all of them here) in as few log_batch calls as
        MLflow's caps allow: one for a trial of up to 1000 params and metrics."""
        run = self.client.create_run(
            self.experiment_id, run_name=run_name(trial), start_time=start_time,
            tags={**self.context, **tags, PARENT_TAG: parent_id, TRIAL_TAG: trial.hash,
                  KIND_TAG: "trial", POINT_TAG: trial.point_label,
                  **({PHASE_TAG: trial.phase} if trial.phase != "final" else {})})
        params = flatten(filled(trial.config))  # the arch's real depth, the real sizes
        params.update(backend=trial.backend, device=trial.device, seed=str(trial.seed))
        self.log_batch(run.info.run_id, rows, params)
        return run.info.run_id

    def log_batch(self, run_id: str, rows=(), params: dict | None = None,
                  tags: dict | None = None) -> None:
        """Metric rows (key, value, step, timestamp ms), params and tags together, packed
        into MLflow's caps: 1000 entities a call, of which 100 params and 100 tags."""
        from mlflow.entities import Metric, Param, RunTag

        metrics = [Metric(k, float(v), int(ts), int(step)) for k, v, step, ts in rows]
        params = [Param(k, str(v)[:6000]) for k, v in (params or {}).items()]
        tags = [RunTag(k, str(v)[:8000]) for k, v in (tags or {}).items()]
        for m, p, t in pack(metrics, params, tags):
            self.client.log_batch(run_id, metrics=m, params=p, tags=t)

    def log_metrics(self, run_id: str, rows: list[tuple[str, float, int, int]]) -> None:
        """rows of (key, value, step, timestamp ms), written BATCH at a time."""
        self.log_batch(run_id, rows)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self.log_batch(run_id, tags=tags)

    def log_artifacts(self, run_id: str, folder: Path) -> None:
        self.client.log_artifacts(run_id, str(folder))

    def end(self, run_id: str, status: str, end_time: int | None = None) -> None:
        self.client.set_terminated(run_id, status, end_time=end_time)

    def latest_parent(self, file: str):
        """The newest invocation's parent run of this experiment file (as the runner named
        it), or None."""
        parents = [r for r in self.runs() if r.data.tags.get(KIND_TAG) == "parent"
                   and r.data.tags.get(FILE_TAG) == str(file)]
        return max(parents, key=lambda r: r.info.start_time or 0, default=None)

    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """A metric's (step, value) pairs, as logged."""
        return [(m.step, m.value) for m in self.client.get_metric_history(run_id, key)]

    def download(self, run_id: str, artifact: str, folder: str | Path) -> Path:
        """One artifact of a run, copied into `folder`; its local path."""
        return Path(self.client.download_artifacts(run_id, artifact, str(folder)))


def pack(metrics: list, params: list, tags: list):
    """(metrics, params, tags) per log_batch call: params and tags PARAM_BATCH at a time,
    metrics filling the rest of BATCH entities; nothing at all, no call."""
    while metrics or params or tags:
        p, params = params[:PARAM_BATCH], params[PARAM_BATCH:]
        t, tags = tags[:PARAM_BATCH], tags[PARAM_BATCH:]
        room = BATCH - len(p) - len(t)
        m, metrics = metrics[:room], metrics[room:]
        yield m, p, t


def run_name(trial, limit: int = 60) -> str:
    """'optimizer=adam(lr=0.001) torch seed=2': the sweep point shortened, never the backend,
    device or seed, to fit `limit` characters (what the MLflow UI shows of a name)."""
    where = trial.backend if trial.device == "cpu" else f"{trial.backend}/{trial.device}"
    tail = f"{where} seed={trial.seed}" + (" tune" if trial.phase == "tune" else "")
    point = trial.point_label if trial.point else ""
    room = limit - len(tail) - 1
    if len(point) > room:
        point = point[:max(0, room - 1)] + "…"
    return f"{point} {tail}".strip()


def now_ms() -> int:
    return int(time.time() * 1000)
