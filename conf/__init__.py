"""Hydra config groups, shipped inside the package as promptrl.conf (see pyproject.toml)."""
