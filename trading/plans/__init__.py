"""Order plans: the orders that carry out a risk verdict, every price on the contract's tick grid.

Pure functions on dataclasses: no ORM, no I/O. Take-profits and stops are OCO pairs of equal quantity
(take-profit i with stop i), so a partial take-profit never leaves a stop larger than the position.
A new position's entry rides with its exits as bracket orders (Tradovate's placeoso), protected the moment
it fills; a bracket's exits take its entry's quantity, so several targets split the entry, one per pair.

This package re-exports its public API by name (`from trading.plans import plan_open`), on purpose: it is a
small pure library whose callers should not care which module a name lives in. Modules depend one way
(arrows point to what a module imports; values imports nothing here, enums only trading.risk):
    planning -> protection -> settings -> enums, values
    planning -> protection -> intents -> enums, values
    planning -> trading.risk (the verdict being planned)
"""

from trading.plans.enums import IntentAction, IntentRole, IntentType, StopKind
from trading.plans.intents import OrderIntent, OrderPlan
from trading.plans.planning import (
    blended_average,
    plan_add,
    plan_close,
    plan_for_verdict,
    plan_open,
    plan_protection,
    plan_reduce,
    plan_reverse,
    replan_after_average_down,
)
from trading.plans.protection import allocate_trims
from trading.plans.settings import PLAN_FIELDS, PlanSettings, TakeProfitTarget, merge_plan_settings

__all__ = [
    "PLAN_FIELDS",
    "IntentAction",
    "IntentRole",
    "IntentType",
    "OrderIntent",
    "OrderPlan",
    "PlanSettings",
    "StopKind",
    "TakeProfitTarget",
    "allocate_trims",
    "blended_average",
    "merge_plan_settings",
    "plan_add",
    "plan_close",
    "plan_for_verdict",
    "plan_open",
    "plan_protection",
    "plan_reduce",
    "plan_reverse",
    "replan_after_average_down",
]
