"""Trading domain models, one module per area; import them from here."""

from trading.models.accounts import BrokerAccount, BrokerSubAccount
from trading.models.choices import DirectionFilter, DistanceUnit, StopType, StopUnit
from trading.models.contracts import ContractSpec
from trading.models.killswitches import KillSwitch
from trading.models.orders import Fill, Order, Position
from trading.models.paper import PaperFill, PaperOrder, PaperPosition
from trading.models.prices import LastPrice
from trading.models.reconciliation import ReconcileAction, ReconcileRun
from trading.models.recorders import (
    MAX_TP_TARGETS,
    PLAN_SETTING_FIELDS,
    RISK_SETTING_FIELDS,
    SETTING_FIELDS,
    Recorder,
    RecorderPosition,
    RecorderTarget,
    RecorderTrade,
)
from trading.models.signals import Decision, Signal, TraderState
from trading.models.traders import Trader, TraderSubAccount, TraderTarget

__all__ = [
    "MAX_TP_TARGETS",
    "PLAN_SETTING_FIELDS",
    "RISK_SETTING_FIELDS",
    "SETTING_FIELDS",
    "BrokerAccount",
    "BrokerSubAccount",
    "ContractSpec",
    "Decision",
    "DirectionFilter",
    "DistanceUnit",
    "Fill",
    "KillSwitch",
    "LastPrice",
    "Order",
    "PaperFill",
    "PaperOrder",
    "PaperPosition",
    "Position",
    "ReconcileAction",
    "ReconcileRun",
    "Recorder",
    "RecorderPosition",
    "RecorderTarget",
    "RecorderTrade",
    "Signal",
    "StopType",
    "StopUnit",
    "Trader",
    "TraderState",
    "TraderSubAccount",
    "TraderTarget",
]
