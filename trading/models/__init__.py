"""Trading domain models, one module per area; import them from here."""

from trading.models.accounts import BrokerAccount, BrokerSubAccount
from trading.models.choices import DirectionFilter, DistanceUnit, StopType, StopUnit
from trading.models.contracts import ContractSpec
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
from trading.models.traders import Trader, TraderSubAccount, TraderTarget

__all__ = [
    "MAX_TP_TARGETS",
    "PLAN_SETTING_FIELDS",
    "RISK_SETTING_FIELDS",
    "SETTING_FIELDS",
    "BrokerAccount",
    "BrokerSubAccount",
    "ContractSpec",
    "DirectionFilter",
    "DistanceUnit",
    "Recorder",
    "RecorderPosition",
    "RecorderTarget",
    "RecorderTrade",
    "StopType",
    "StopUnit",
    "Trader",
    "TraderSubAccount",
    "TraderTarget",
]
from trading.models.execution import *  # noqa: F403
from trading.models.reconciliation import *  # noqa: F403
