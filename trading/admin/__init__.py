"""Operator console of the trading domain, one module per area; importing a module registers its admins."""

from trading.admin import (
    broker_accounts,
    contracts,
    killswitches,
    orders,
    paper,
    prices,
    reconciliation,
    recorders,
    signals,
    traders,
)

__all__ = [
    "broker_accounts",
    "contracts",
    "killswitches",
    "orders",
    "paper",
    "prices",
    "reconciliation",
    "recorders",
    "signals",
    "traders",
]
