"""The paper broker: a simulated exchange and account in our own database, behind the same Broker interface.

`broker` (the interface over one account) and `prices` (a new price crossed with the resting orders) use
`book` (one book: its lock and the matching). The package names its public parts here, as callers import
them from `trading.brokers.paper`.

Market orders fill at the last price known for the contract (a signal's price or one posted to /api/prices/);
resting limit, stop and trailing-stop orders fill when a later price crosses them; bracket legs wait for their
entry and cancel each other (OCO). Positions, average price and realized P&L per CME session are kept.

Every change to one sub-account's book in one contract runs in a transaction holding that book's
PaperPosition row lock (on SQLite the immediate transaction's write lock), so a price tick and an order
arriving together never fill the same order twice or lose a fill.
"""

from trading.brokers.paper.broker import PAPER_STARTING_CASH, PaperBroker, paper_account_id
from trading.brokers.paper.prices import paper_price_update

__all__ = ["PAPER_STARTING_CASH", "PaperBroker", "paper_account_id", "paper_price_update"]
