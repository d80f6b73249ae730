"""The demo a fresh install starts with: a paper account, a recorder and a trader."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from trading.models import (
    BrokerAccount,
    Recorder,
    Trader,
)
from trading.selectors import (
    webhook_path,
)
from trading.services.broker_accounts import broker_account_create
from trading.services.recorders import recorder_create
from trading.services.traders import trader_create

DEMO_ACCOUNT_NAME = "Paper"
DEMO_RECORDER_NAME = "Demo ES strategy"


def demo_trading_seed(user) -> dict[str, Any]:
    """Give a user a paper account, an ES recorder and a trader linking them (idempotent); return them."""
    account = BrokerAccount.objects.filter(owner=user, name=DEMO_ACCOUNT_NAME).first()
    if account is None:
        account = broker_account_create(owner=user, name=DEMO_ACCOUNT_NAME, kind=BrokerAccount.Kind.PAPER)
    recorder = Recorder.objects.filter(owner=user, name=DEMO_RECORDER_NAME).first()
    if recorder is None:
        recorder = recorder_create(
            owner=user,
            name=DEMO_RECORDER_NAME,
            symbol="ES",
            tp_targets=[{"value": 8, "trim": None}],
            sl_enabled=True,
            sl_amount=Decimal(8),
        )
    trader = Trader.objects.filter(recorder=recorder, account=account).first()
    if trader is None:
        trader = trader_create(owner=user, recorder=recorder, account=account)
    return {
        "account": account,
        "recorder": recorder,
        "trader": trader,
        "webhook_path": webhook_path(recorder.webhook_token),
    }
