"""promptrl's Hydra sweeper on optuna 4: `+hparams_search=optuna` (or `hydra/sweeper=optuna`).

Hydra finds it by scanning the `hydra_plugins` namespace package; `config.py` registers the
`hydra/sweeper: optuna` config node, `optuna_sweeper.py` holds the sweeper.
"""
