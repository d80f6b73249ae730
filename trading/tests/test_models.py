"""Database constraints: every invariant holds even for writes that bypass the services."""

import importlib
from datetime import time
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from trading.models import (
    PLAN_SETTING_FIELDS,
    RISK_SETTING_FIELDS,
    BrokerAccount,
    BrokerSubAccount,
    ContractSpec,
    Decision,
    Order,
    Recorder,
    RecorderPosition,
    RecorderTarget,
    RecorderTrade,
    Signal,
    Trader,
    TraderSubAccount,
    TraderTarget,
)
from trading.plans import PLAN_FIELDS
from trading.risk import RISK_FIELDS
from trading.tests.factories import BrokerAccountFactory, RecorderFactory, TraderFactory

pytestmark = pytest.mark.django_db


def violates(update, **changes) -> bool:
    """Return whether an UPDATE of one row with `changes` is refused by the database."""
    try:
        with transaction.atomic():
            update(**changes)
    except IntegrityError:
        return True
    return False


def test_recorder_and_trader_fields_are_exactly_what_the_risk_engine_and_plans_read():
    assert set(RISK_SETTING_FIELDS) == RISK_FIELDS
    assert set(PLAN_SETTING_FIELDS) | {"tp_targets"} == PLAN_FIELDS
    for name in (*RISK_SETTING_FIELDS, *PLAN_SETTING_FIELDS):
        Trader._meta.get_field(name)  # every setting can be overridden


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("initial_position_size", 0),
        ("sl_amount", Decimal("-1")),
        ("avg_down_point", Decimal("-0.25")),
        ("max_daily_loss", Decimal("-100")),
        ("signal_delay_nth", 0),
        ("max_signal_age", 0),
        ("tp_units", "dollars"),
        ("sl_units", "miles"),
        ("sl_type", "wobbly"),
        ("avg_down_units", "dollars"),
        ("direction_filter", "sideways"),
        ("strategy_type", "hunch"),
        ("name", ""),
        ("symbol", ""),
        ("webhook_token_hash", "not-a-digest"),
    ],
)
def test_a_recorder_row_refuses_invalid_values(field, value):
    recorder = RecorderFactory()
    assert violates(Recorder.objects.filter(pk=recorder.pk).update, **{field: value})


def test_a_recorder_accepts_a_dollar_stop_and_zero_limits():
    recorder = RecorderFactory()
    assert not violates(
        Recorder.objects.filter(pk=recorder.pk).update,
        sl_units="dollars",
        sl_amount=0,
        add_position_size=0,
        max_daily_loss=0,
        max_contracts_per_trade=0,
    )


def test_a_time_filter_that_is_on_needs_a_start_and_a_different_stop():
    recorder = RecorderFactory()
    update = Recorder.objects.filter(pk=recorder.pk).update
    assert violates(update, time_filter_1_enabled=True)
    assert violates(update, time_filter_2_enabled=True, time_filter_2_start=time(9, 30))
    assert violates(
        update, time_filter_1_enabled=True, time_filter_1_start=time(9, 30), time_filter_1_stop=time(9, 30)
    )
    assert not violates(
        update, time_filter_1_enabled=True, time_filter_1_start=time(22, 0), time_filter_1_stop=time(2, 0)
    )


def test_recorder_names_are_unique_per_owner_whatever_the_case():
    recorder = RecorderFactory(name="Trend")
    other = RecorderFactory(owner=recorder.owner)
    assert violates(Recorder.objects.filter(pk=other.pk).update, name="TREND")
    RecorderFactory(name="Trend")  # another owner may use the name


def test_webhook_token_digests_are_unique():
    first, second = RecorderFactory(), RecorderFactory()
    assert violates(Recorder.objects.filter(pk=second.pk).update, webhook_token_hash=first.webhook_token_hash)


def test_take_profit_targets_need_a_positive_distance_a_positive_trim_and_their_own_number():
    recorder = RecorderFactory(tp_targets=[{"value": 8, "trim": 1}])
    target = recorder.targets.get()
    update = RecorderTarget.objects.filter(pk=target.pk).update
    assert violates(update, value=0)
    assert violates(update, trim=0)
    assert violates(update, number=0)
    assert not violates(update, trim=None)
    with pytest.raises(IntegrityError), transaction.atomic():
        RecorderTarget.objects.create(recorder=recorder, number=1, value=Decimal(16))


def test_a_paper_account_can_hold_no_credentials_and_is_never_live():
    account = BrokerAccountFactory()
    update = BrokerAccount.objects.filter(pk=account.pk).update
    assert violates(update, is_demo=False)
    assert violates(update, password="secret")
    assert violates(update, kind="robinhood")
    assert violates(update, status="confused")
    assert not violates(update, kind="tradovate", is_demo=False, password="secret")


def test_broker_account_names_are_unique_per_owner():
    account = BrokerAccountFactory(name="Main")
    with pytest.raises(IntegrityError), transaction.atomic():
        BrokerAccount.objects.create(owner=account.owner, name="Main")


def test_sub_accounts_are_unique_per_broker_id_within_an_account():
    account = BrokerAccountFactory()
    sub = account.subaccounts.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        BrokerSubAccount.objects.create(account=account, broker_id=sub.broker_id, name="copy")
    assert violates(BrokerSubAccount.objects.filter(pk=sub.pk).update, broker_id="")


def test_one_trader_per_recorder_and_account_and_one_link_per_sub_account():
    trader = TraderFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Trader.objects.create(recorder=trader.recorder, account=trader.account)
    link = trader.subaccount_links.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        TraderSubAccount.objects.create(trader=trader, subaccount=link.subaccount, multiplier=2)
    assert violates(TraderSubAccount.objects.filter(pk=link.pk).update, multiplier=0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("initial_position_size", 0),
        ("sl_amount", Decimal("-1")),
        ("max_daily_loss", Decimal("-1")),
        ("signal_delay_nth", 0),
        ("sl_units", "miles"),
        ("direction_filter", "up"),
    ],
)
def test_trader_overrides_obey_the_same_rules_as_the_recorder(field, value):
    trader = TraderFactory()
    assert violates(Trader.objects.filter(pk=trader.pk).update, **{field: value})


def test_empty_trader_overrides_are_allowed():
    trader = TraderFactory()
    assert trader.tp_units == ""
    assert trader.initial_position_size is None
    assert trader.sl_enabled is None
    target = TraderTarget.objects.create(trader=trader, number=1, value=Decimal(4), trim=None)
    assert violates(TraderTarget.objects.filter(pk=target.pk).update, value=Decimal("-4"))


def test_a_virtual_position_has_an_average_price_exactly_when_it_is_open():
    recorder = RecorderFactory()
    update = RecorderPosition.objects.filter(recorder=recorder).update
    assert violates(update, quantity=2)
    assert violates(update, avg_price=Decimal("5000"))
    assert not violates(update, quantity=-2, avg_price=Decimal("5000.25"))


def test_virtual_trades_are_positive_and_recorded_once_per_source():
    recorder = RecorderFactory()
    fields = {
        "recorder": recorder,
        "executed_at": "2026-03-02T15:00:00Z",
        "session": "2026-03-02",
        "action": "buy",
        "quantity": 1,
        "price": Decimal(5000),
        "position_after": 1,
        "source_key": "signal:1",
    }
    trade = RecorderTrade.objects.create(**fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        RecorderTrade.objects.create(**fields)
    RecorderTrade.objects.create(**{**fields, "source_key": ""})
    RecorderTrade.objects.create(**{**fields, "source_key": ""})  # unkeyed fills are never merged
    assert violates(RecorderTrade.objects.filter(pk=trade.pk).update, quantity=0)
    assert violates(RecorderTrade.objects.filter(pk=trade.pk).update, action="hold")


def test_the_data_migration_loads_the_contract_table_of_the_spec():
    from importlib import import_module

    from django.apps import apps

    ContractSpec.objects.all().delete()
    import_module("trading.migrations.0002_load_contract_specs").load_contracts(apps, None)
    specs = {spec.root: spec for spec in ContractSpec.objects.all()}
    assert set(specs) == {"ES", "MES", "NQ", "MNQ", "YM", "MYM", "RTY", "M2K", "CL", "MCL", "GC", "MGC"}
    es = specs["ES"].as_contract_info()
    assert (es.tick_size, es.tick_value, es.point_value, es.months) == (
        Decimal("0.25"),
        Decimal("12.5"),
        Decimal(50),
        "HMUZ",
    )
    assert specs["MYM"].point_value == Decimal("0.5")
    assert specs["GC"].months == "GJMQVZ"
    for spec in specs.values():
        spec.full_clean()  # tick value = tick size x point value for every row


def test_contract_specs_refuse_non_positive_ticks():
    update = ContractSpec.objects.filter(root="ES").update
    assert violates(update, tick_size=0)
    assert violates(update, tick_value=Decimal("-12.5"))
    assert violates(update, point_value=0)
    assert violates(update, months="HMUZ1")


def test_a_contract_spec_whose_tick_value_disagrees_is_refused_by_validation():
    from django.core.exceptions import ValidationError

    spec = ContractSpec.objects.get(root="ES")
    spec.tick_value = Decimal("10")
    with pytest.raises(ValidationError, match="tick size x point value"):
        spec.full_clean()


@pytest.mark.django_db
def test_orders_stored_before_the_cancel_reason_existed_get_it_from_their_words_once():
    from django.apps import apps

    migration = importlib.import_module("trading.migrations.0006_order_cancel_reason")
    account = BrokerAccountFactory()
    recorder = RecorderFactory(owner=account.owner)
    decision = Decision.objects.create(
        signal=Signal.objects.create(recorder=recorder, received_at=timezone.now()),
        trader=TraderFactory(account=account, recorder=recorder),
    )
    words = {
        "replaced": f"Cancelled: replaced by the orders of decision {decision.pk}.",
        "not_sent": "Not sent: its entry was not sent.",
        "nothing_to_protect": "Cancelled: nothing left for it to protect.",
        "filled": "",
    }
    orders = {
        name: Order.objects.create(
            broker_account=account,
            account_id="paper",
            symbol="ES",
            client_id=f"jt-{name}",
            role=Order.Role.STOP_LOSS,
            action=Order.Action.SELL,
            order_type=Order.Type.STOP,
            quantity=1,
            stop_price=Decimal("4990"),
            error=text,
        )
        for name, text in words.items()
    }

    migration.reasons_from_text(apps, None)

    stored = {name: Order.objects.get(pk=order.pk) for name, order in orders.items()}
    assert stored["replaced"].cancel_reason == Order.CancelReason.REPLACED
    assert stored["replaced"].replaced_by == decision
    assert stored["not_sent"].cancel_reason == Order.CancelReason.NOT_SENT
    assert stored["nothing_to_protect"].cancel_reason == Order.CancelReason.NOTHING_TO_PROTECT
    assert stored["filled"].cancel_reason == ""
