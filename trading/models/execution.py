"""Old home of the execution models, kept for the modules being moved; import from trading.models instead."""

from trading.models.killswitches import KillSwitch
from trading.models.orders import Fill, Order, Position
from trading.models.paper import PaperFill, PaperOrder, PaperPosition
from trading.models.prices import LastPrice
from trading.models.signals import Decision, Signal, TraderState

__all__ = [
    "Decision",
    "Fill",
    "KillSwitch",
    "LastPrice",
    "Order",
    "PaperFill",
    "PaperOrder",
    "PaperPosition",
    "Position",
    "Signal",
    "TraderState",
]
