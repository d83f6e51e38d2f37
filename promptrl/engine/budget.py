"""Spending limits on calls, tokens and cost, over every language model of a run and per role.

Checked before each call: once a limit is reached no new call starts. Calls are counted when
they start, so `max_calls` is exact; tokens and cost are known when calls finish, so a run may
pass those limits by what its calls in flight spend. The recipe turns `BudgetReached` into a clean stop: status `budget_reached`, best
checkpoint kept, final evaluations if `reserve_final`.
"""

from __future__ import annotations

from promptrl.errors import BudgetReached, UserError

LIMITS = ("max_calls", "max_tokens", "max_cost")


def _check_limits(where: str, limits: dict) -> dict:
    unknown = set(limits) - set(LIMITS)
    if unknown:
        raise UserError(f"{where}: unknown limit(s) {sorted(unknown)}; use {', '.join(LIMITS)}")
    for key, value in limits.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise UserError(f"{where}.{key}={value!r} is not valid; give a positive number or null (no limit)")
    return {k: v for k, v in limits.items() if v is not None}


class Budget:
    """`Budget(max_calls=..., max_tokens=..., max_cost=..., roles={"optimizer": {"max_cost": 0.5}})`;
    `watch(role, language_model)` adds a model's spending under a role."""

    def __init__(self, max_calls=None, max_tokens=None, max_cost=None, roles: dict | None = None):
        if roles is not None and not isinstance(roles, dict) or any(not isinstance(v, dict) for v in (roles or {}).values()):
            raise UserError(f"budget.roles={roles!r} is not valid; give a mapping, e.g. roles: {{optimizer: {{max_cost: 0.5}}}}")
        self.limits = _check_limits("budget", {"max_calls": max_calls, "max_tokens": max_tokens, "max_cost": max_cost})
        self.role_limits = {role: _check_limits(f"budget.roles.{role}", dict(limits or {}))
                            for role, limits in (roles or {}).items()}
        self.models: dict[str, list] = {}
        self.enabled = True
        self.reserved: dict[str, float] = {}  # held back (e.g. for the final evaluations): counted as spent
        self.started: dict[int, int] = {}  # calls started, per model

    @property
    def active(self) -> bool:
        return bool(self.limits or any(self.role_limits.values()))

    def watch(self, role: str, language_model) -> None:
        if language_model is not None:
            self.models.setdefault(role, []).append(language_model)
            language_model.budget = self

    def spent(self, role: str | None = None) -> dict:
        models = self.models.get(role, []) if role else [m for ms in self.models.values() for m in ms]
        # Replies paid by an earlier process of the run (before a crash) count: `--resume` keeps the budget.
        return {"max_calls": sum(self.started.get(id(m), 0) + m.usage.replayed_calls for m in models),
                "max_tokens": sum(m.usage.prompt_tokens + m.usage.completion_tokens + m.usage.replayed_tokens
                                  for m in models),
                "max_cost": sum(m.usage.cost + m.usage.replayed_cost for m in models)}

    def start_call(self, language_model) -> None:
        """Before a paid request (each attempt): raise BudgetReached if a limit is reached, else count it."""
        self.check()
        self.started[id(language_model)] = self.started.get(id(language_model), 0) + 1

    def check(self) -> None:
        """Raise BudgetReached when any limit is reached."""
        if not self.enabled:
            return
        for role, limits in [(None, self.limits), *self.role_limits.items()]:
            spent = self.spent(role)
            for key, limit in limits.items():
                if spent[key] + (self.reserved.get(key, 0) if role in (None, "program") else 0) >= limit:
                    held = f" (+{self.reserved[key]:.6g} held for the final evaluations)" if self.reserved.get(key) else ""
                    raise BudgetReached(f"budget reached: {key[4:]} {spent[key]:.6g}{held} of {limit:g}"
                                        + (f" for the {role} model" if role else ""))

    def validate(self) -> None:
        """Limits that could never trigger are mistakes: say so before anything is paid."""
        from promptrl.engine.prices import price_per_token

        for role in self.role_limits:
            if role not in self.models:
                raise UserError(f"budget.roles.{role}: this run has no '{role}' model (it has "
                                f"{', '.join(sorted(self.models))}); fix the role name")
        for role, limits in [(None, self.limits), *self.role_limits.items()]:
            models = self.models.get(role, []) if role else [m for ms in self.models.values() for m in ms]
            unpriced = [m.model for m in models if not m.is_local and price_per_token(m.model) == (0.0, 0.0)]
            if "max_cost" in limits and unpriced and len(unpriced) == len(models):
                raise UserError(f"budget{'.roles.' + role if role else ''}.max_cost: no price is known for "
                                f"{', '.join(unpriced)}, so its cost stays 0; cap max_calls or max_tokens instead")

    def reserve(self, amounts: dict) -> None:
        """Hold `amounts` ({"max_calls": ..}) back from now on; `reserve({})` releases it."""
        self.reserved = dict(amounts)

    def report(self) -> dict:
        return {"limits": self.limits, "roles": self.role_limits,
                "spent": {k[4:]: v for k, v in self.spent().items()}}
