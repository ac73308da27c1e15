"""Log a finished NORA run to MLflow (``tracking=mlflow``), through ``MlflowClient`` so the
caller's global MLflow state (active run, tracking URI) is left alone.

Default store: MLflow 3.x's own default, a local SQLite database ``sqlite:///mlflow.db``
(the ``./mlruns`` file store is in maintenance mode and refused unless
``MLFLOW_ALLOW_FILE_STORE=true``); artifacts next to it in ``./mlruns``. ``tracking.uri=``
points at a server (``http://host:5000``) or another database.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from nora.tracking.records import RunView, TrackingError

DEFAULT_URI = "sqlite:///mlflow.db"
_STATUS = {"done": "FINISHED", "halted": "FAILED", "failed": "FAILED", "crashed": "FAILED"}


def resolve_uri(uri: str | None) -> str:
    """``tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else the local SQLite store."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def _client(uri: str) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise TrackingError("tracking='mlflow' needs the mlflow package; install it with "
                            "pip install 'nora[mlflow]' (or choose tracking=none, "
                            "tensorboard)") from None
    return MlflowClient(tracking_uri=uri)


def _experiment_id(client: Any, name: str, uri: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:"):   # artifacts beside the database, not in the cwd's guess
        db = Path(uri.split(":///", 1)[-1]) if ":///" in uri else Path("mlflow.db")
        folder = re.sub(r"[^A-Za-z0-9._-]", "_", name)
        location = (db.resolve().parent / "mlruns" / folder).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # noqa: BLE001 - created meanwhile by a parallel logger
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def find_logged(client: Any, experiment_id: str, run_dir: str) -> str | None:
    """The MLflow run already holding this run directory, if any (logging is idempotent)."""
    quoted = run_dir.replace("'", "\\'")
    runs = client.search_runs([experiment_id], f"tags.`nora.run_dir` = '{quoted}'",
                              max_results=1)
    return runs[0].info.run_id if runs else None


def log_view(view: RunView, *, uri: str | None, experiment: str,
             log_checkpoints: bool = False) -> str:
    """Create one MLflow run from ``view``; returns its run id (the existing one, with the
    view's tags added, when this run directory was logged before)."""
    from mlflow.entities import Metric, Param, RunTag

    uri = resolve_uri(uri)
    client = _client(uri)
    exp_id = _experiment_id(client, experiment, uri)
    existing = find_logged(client, exp_id, view.tags["nora.run_dir"])
    if existing is not None:       # logged before (e.g. by nora.train): add any new tags
        tags = [RunTag(k, v[:5000]) for k, v in view.tags.items()]
        for chunk in _chunks(tags, 100):
            client.log_batch(existing, tags=chunk)
        return existing
    tags = {"mlflow.runName": view.name, **view.tags}
    run = client.create_run(exp_id, tags=tags, run_name=tags["mlflow.runName"])
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, s) for k, v, s in view.scalars]
        final_step = max((s for _, _, s in view.scalars), default=0)
        metrics += [Metric(k, v, now, final_step) for k, v in view.summary_metrics.items()]
        params = [Param(k[:250], v[:6000]) for k, v in view.params.items()]
        for chunk in _chunks(params, 100):
            client.log_batch(run_id, params=chunk)
        for chunk in _chunks(metrics, 1000):
            client.log_batch(run_id, metrics=chunk)
        for path in view.artifacts:
            rel = path.parent.relative_to(view.run_dir)
            client.log_artifact(run_id, str(path), None if str(rel) == "." else str(rel))
        if log_checkpoints:
            for sub in ("checkpoints", "state"):
                if (view.run_dir / sub).is_dir():
                    client.log_artifacts(run_id, str(view.run_dir / sub), sub)
        decisions = [RunTag("nora.decisions", str(len(view.decisions)))]
        client.log_batch(run_id, tags=decisions)
    except BaseException:
        client.delete_run(run_id)   # no half-logged run that a retry would take as done
        raise
    client.set_terminated(run_id, _STATUS.get(view.status, "FINISHED"))
    return run_id
