"""Copy a finished run's records into the tools teams already look at: MLflow or TensorBoard.

``log_run(run_dir, config)`` reads the run directory (never the live run), so it is called
once training has finished, and any run directory can be logged later the same way.
MLflow and TensorBoard are imported only when a run is logged to them.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nora.config.tracking import TrackingConfig
from nora.tracking.records import RunView, TrackingError, read_run

__all__ = ["RunView", "TrackingConfig", "TrackingError", "log_run", "read_run", "require"]

_PACKAGES = {"mlflow": ("mlflow", "mlflow"), "tensorboard": ("tensorboard", "tensorboard")}


def _tracking(config: Any) -> TrackingConfig:
    if config is None:
        return TrackingConfig()
    if isinstance(config, TrackingConfig):
        return config
    if isinstance(config, str):
        return TrackingConfig(name=config)
    tracking = getattr(config, "tracking", None)
    if isinstance(tracking, TrackingConfig):
        return tracking
    raise TrackingError(f"config {type(config).__name__!r} has no tracking settings; pass a "
                        "RunConfig, a TrackingConfig or a tracker name (none, mlflow, "
                        "tensorboard)")


def require(config: Any) -> None:
    """Fail before training, not after it, when the chosen tracker is not installed."""
    import importlib.util

    tracking = _tracking(config)
    if tracking.name in _PACKAGES:
        module, extra = _PACKAGES[tracking.name]
        if importlib.util.find_spec(module) is None:
            raise TrackingError(f"tracking={tracking.name!r} needs the {module} package; "
                                f"install it with pip install 'nora[{extra}]' (or choose "
                                "tracking=none)")


def log_run(run_dir: str | Path, config: Any = None, *,
            extra_tags: Mapping[str, Any] | None = None) -> str | None:
    """Log the finished run in ``run_dir`` to the tracker ``config.tracking`` names.

    ``config`` is the run's ``RunConfig`` (or a ``TrackingConfig``, or ``"mlflow"``).
    Returns the MLflow run id, the TensorBoard folder, or None for ``tracking=none``.
    Raises ``TrackingError`` when the run directory has no records or the tracker's package
    is not installed; the run's own records are never touched (TensorBoard's default folder
    ``<run_dir>/tensorboard`` is added beside them).
    """
    tracking = _tracking(config)
    if tracking.name == "none":
        return None
    view = read_run(run_dir, extra_tags=extra_tags)
    if tracking.name == "mlflow":
        from nora.tracking import mlflow_log

        return mlflow_log.log_view(view, uri=tracking.uri, experiment=tracking.experiment,
                                   log_checkpoints=tracking.log_checkpoints)
    from nora.tracking import tensorboard_log

    return str(tensorboard_log.log_view(view, log_dir=tracking.log_dir))
