"""Risk filters: whether a signal becomes a trade, how many contracts, and what kind of move it is.

Pure functions on dataclasses: no ORM, no I/O, no settings. The Django layer maps Recorder and Trader fields
(the names of /api/recorders/) onto RiskSettings and the stored counters onto RiskState.

This package re-exports its public API by name (`from trading.risk import session_key`), on purpose: it is a
small pure library whose callers should not care which module a name lives in. Modules depend one way
(arrows point to what a module imports; values and enums import nothing here):
    book -> engine -> settings -> enums, values
            engine -> sessions -> values
"""

from trading.risk.book import RecorderBook
from trading.risk.engine import RiskState, SignalInput, Verdict, auto_flat_due, evaluate
from trading.risk.enums import Action, Direction, MarketPosition, Move, Side
from trading.risk.sessions import CME_TIMEZONE, SESSION_ROLL, session_key, session_range, session_start
from trading.risk.settings import DEFAULT_TIMEZONE, RISK_FIELDS, RiskSettings, TimeWindow, merge_settings

__all__ = [
    "CME_TIMEZONE",
    "DEFAULT_TIMEZONE",
    "RISK_FIELDS",
    "SESSION_ROLL",
    "Action",
    "Direction",
    "MarketPosition",
    "Move",
    "RecorderBook",
    "RiskSettings",
    "RiskState",
    "Side",
    "SignalInput",
    "TimeWindow",
    "Verdict",
    "auto_flat_due",
    "evaluate",
    "merge_settings",
    "session_key",
    "session_range",
    "session_start",
]
