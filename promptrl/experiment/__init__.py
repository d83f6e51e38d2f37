"""Config glue (layer 2): composed Hydra configs -> library objects -> a run dir full of results."""

from promptrl.experiment.recipes import run_evaluate, run_plan, run_train

__all__ = ["run_evaluate", "run_plan", "run_train"]
