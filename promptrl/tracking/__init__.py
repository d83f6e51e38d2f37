"""Experiment trackers: where a run's params, per-epoch metrics, results and files go besides its
run dir, so runs can be compared across days (`+logger=mlflow`).

The run dir stays the record; a tracker copies it into a store. Nothing here imports a tracker's
package before a run asks for it (MLflow takes seconds to import).
"""

from promptrl.tracking.mlflow import MLflowLogger, flatten

__all__ = ["MLflowLogger", "flatten"]
