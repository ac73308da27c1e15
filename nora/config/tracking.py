"""Where a finished run is also logged: nowhere, MLflow or TensorBoard (``tracking=`` group).

NORA's own records stay the source of truth; a tracker gets a copy read from the run
directory after the run, so tracking can never change what was trained.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

TrackerName = Literal["none", "mlflow", "tensorboard"]


class TrackingConfig(BaseModel):
    """``name`` picks the tracker; ``uri``/``experiment`` are MLflow's, ``log_dir``
    TensorBoard's (default: ``<run_dir>/tensorboard``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: TrackerName = "none"
    uri: str | None = None          # MLflow tracking URI; None: $MLFLOW_TRACKING_URI, else sqlite
    experiment: str = Field(default="nora", min_length=1)
    log_dir: str | None = None      # TensorBoard event folder
    log_checkpoints: bool = False   # also upload checkpoints/ and state/ (large)
