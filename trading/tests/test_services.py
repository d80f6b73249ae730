"""Services and selectors: accounts and their secrets, recorders and tokens, traders, virtual performance."""

import io
from datetime import UTC, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection

from trading import selectors
from trading.brokers.base import SubAccount
from trading.models import BrokerAccount, ContractSpec, Recorder, RecorderTrade
from trading.plans import StopKind, TakeProfitTarget
from trading.risk import Direction, SignalInput
from trading.services.broker_accounts import (
    broker_account_create,
    broker_account_mark_active,
    broker_account_mark_needs_attention,
    broker_account_sync_subaccounts,
    broker_account_update,
)
from trading.services.recorders import (
    recorder_create,
    recorder_record_fill,
    recorder_regenerate_webhook_token,
    recorder_reset_performance,
    recorder_signal_evaluate,
    recorder_update,
)
from trading.services.traders import trader_create, trader_update
from trading.symbols import OffsetUnit, SymbolError
from trading.tests.factories import (
    BrokerAccountFactory,
    RecorderFactory,
    TraderFactory,
    TradovateAccountFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db
CHICAGO = ZoneInfo("America/Chicago")


def raw_column(model, pk, column):
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {connection.ops.quote_name(column)} FROM {table} WHERE id = %s", [pk])  # noqa: S608
        return cursor.fetchone()[0]


def chicago(*args):
    return datetime(*args, tzinfo=CHICAGO)


# --- broker accounts ----------------------------------------------------------------------------------------


def test_a_paper_account_gets_its_one_simulated_sub_account():
    account = BrokerAccountFactory(name="Paper")
    (sub,) = account.subaccounts.all()
    assert sub.active
    assert sub.broker_id == f"paper-{account.pk}"
    assert account.is_demo
    assert account.environment_label == "Paper"


def test_a_paper_account_refuses_a_login_and_live_trading():
    owner = UserFactory()
    with pytest.raises(ValidationError) as error:
        broker_account_create(owner=owner, name="P", kind="paper", username="me", password="pw")
    assert "no login" in str(error.value)
    with pytest.raises(ValidationError, match="cannot be live"):
        broker_account_create(owner=owner, name="P", kind="paper", is_demo=False)


def test_a_tradovate_login_needs_both_username_and_password_or_neither():
    owner = UserFactory()
    with pytest.raises(ValidationError) as error:
        broker_account_create(owner=owner, name="T", kind="tradovate", username="me")
    assert "password" in error.value.message_dict
    account = broker_account_create(owner=owner, name="OAuth only", kind="tradovate")
    assert account.subaccounts.count() == 0


def test_account_names_are_unique_per_owner_with_a_clear_message():
    account = BrokerAccountFactory(name="Main")
    with pytest.raises(ValidationError, match="already have a broker account with this name"):
        broker_account_create(owner=account.owner, name="Main")


def test_tradovate_credentials_are_encrypted_at_rest_and_read_back_in_plain():
    account = TradovateAccountFactory(username="alice.trades", password="hunter2-very-secret")
    stored = raw_column(BrokerAccount, account.pk, "password")
    assert "hunter2" not in stored
    assert stored.startswith("fernet:")
    assert "alice.trades" not in raw_column(BrokerAccount, account.pk, "username")
    fresh = BrokerAccount.objects.get(pk=account.pk)
    assert (fresh.username, fresh.password) == ("alice.trades", "hunter2-very-secret")


def test_rotating_encryption_keys_re_encrypts_a_broker_password(settings):
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    account = TradovateAccountFactory(password="rotate-me-please")
    before = raw_column(BrokerAccount, account.pk, "password")
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    out = io.StringIO()
    call_command("rotate_encryption_keys", stdout=out)
    after = raw_column(BrokerAccount, account.pk, "password")
    assert after != before
    assert "re-encrypted" in out.getvalue()
    settings.FIELD_ENCRYPTION_KEYS = [new_key]  # the old key is gone: only the rotated value can be read
    assert BrokerAccount.objects.get(pk=account.pk).password == "rotate-me-please"


def test_a_new_login_drops_cached_tokens_and_switches_off_synced_sub_accounts():
    account = TradovateAccountFactory(username="old-login")
    broker_account_sync_subaccounts(account=account, subaccounts=[SubAccount("1", "DEMO1", True)])
    BrokerAccount.objects.filter(pk=account.pk).update(access_token="cached-token", broker_user_id=7)
    account.refresh_from_db()
    broker_account_mark_needs_attention(account=account, reason="credentials", message="Wrong password.")
    broker_account_update(account=account, username="new-login", password="new-password")
    account.refresh_from_db()
    assert account.access_token == ""
    assert account.broker_user_id is None
    assert account.status == BrokerAccount.Status.ACTIVE
    assert account.status_message == ""
    assert not account.subaccounts.get().active
    assert account.password == "new-password"


def test_an_empty_password_on_update_keeps_the_stored_one():
    account = TradovateAccountFactory(password="keep-me")
    broker_account_update(account=account, name="Renamed", password="")
    account.refresh_from_db()
    assert (account.name, account.password) == ("Renamed", "keep-me")


def test_switching_environment_drops_the_oauth_token_of_the_other_world():
    account = TradovateAccountFactory()
    BrokerAccount.objects.filter(pk=account.pk).update(oauth_token="demo-oauth")
    account.refresh_from_db()
    broker_account_update(account=account, is_demo=False)
    account.refresh_from_db()
    assert account.oauth_token == ""
    assert not account.is_demo


def test_syncing_sub_accounts_adds_renames_and_switches_off_what_the_broker_no_longer_lists():
    account = TradovateAccountFactory()
    broker_account_sync_subaccounts(
        account=account, subaccounts=[SubAccount("1", "DEMO1", True), SubAccount("2", "DEMO2", True)]
    )
    rows = broker_account_sync_subaccounts(
        account=account, subaccounts=[SubAccount("2", "DEMO2-renamed", True), SubAccount("3", "DEMO3", False)]
    )
    assert [row.broker_id for row in rows] == ["2", "3"]
    state = {sub.broker_id: (sub.name, sub.active) for sub in account.subaccounts.all()}
    assert state == {"1": ("DEMO1", False), "2": ("DEMO2-renamed", True), "3": ("DEMO3", False)}
    assert BrokerAccount.objects.get(pk=account.pk).subaccounts_synced_at is not None


def test_needs_attention_is_recorded_with_its_reason_and_cleared_again():
    account = TradovateAccountFactory()
    until = datetime(2026, 3, 2, 16, 0, tzinfo=UTC)
    broker_account_mark_needs_attention(
        account=account, reason="captcha", message="Connect through OAuth.", retry_not_before=until
    )
    stored = BrokerAccount.objects.get(pk=account.pk)
    assert (stored.status, stored.status_reason, stored.retry_not_before) == (
        "needs_attention",
        "captcha",
        until,
    )
    assert stored.password == "tradovate-secret-password"  # the update touched only the status columns
    broker_account_mark_active(account=account)
    assert BrokerAccount.objects.get(pk=account.pk).status == "active"


# --- recorders and webhook tokens ---------------------------------------------------------------------------


def test_a_new_recorder_gets_a_long_random_token_stored_as_a_digest_and_encrypted():
    recorder = RecorderFactory()
    token = recorder.webhook_token
    assert len(token) >= 43  # 32 random bytes, well over 128 bits
    assert recorder.webhook_token_hash == selectors.webhook_token_digest(token)
    assert token not in raw_column(Recorder, recorder.pk, "webhook_token")
    assert Recorder.objects.get(pk=recorder.pk).webhook_token == token
    assert RecorderFactory().webhook_token != token


def test_the_webhook_token_finds_its_recorder_in_one_query(django_assert_num_queries):
    recorder = RecorderFactory()
    with django_assert_num_queries(1):
        assert selectors.recorder_for_webhook_token(recorder.webhook_token).pk == recorder.pk


@pytest.mark.parametrize("token", ["", "unknown-token", "x" * 500])
def test_an_unknown_or_absurd_token_finds_nothing(token, django_assert_max_num_queries):
    RecorderFactory()
    with django_assert_max_num_queries(1):
        assert selectors.recorder_for_webhook_token(token) is None


def test_regenerating_the_token_retires_the_old_url():
    recorder = RecorderFactory()
    old = recorder.webhook_token
    new = recorder_regenerate_webhook_token(recorder=recorder)
    assert new != old
    assert selectors.recorder_for_webhook_token(old) is None
    assert selectors.recorder_for_webhook_token(new).pk == recorder.pk


def test_a_recorder_symbol_must_resolve_to_a_known_contract():
    owner = UserFactory()
    recorder = recorder_create(owner=owner, name="Nasdaq", symbol=" cme_mini:nq1! ")
    assert recorder.symbol == "CME_MINI:NQ1!"
    with pytest.raises(ValidationError) as error:
        recorder_create(owner=owner, name="Bad", symbol="AAPL")
    assert "not a supported contract" in error.value.message_dict["symbol"][0]


def test_a_time_filter_that_is_on_without_times_is_refused_on_its_field():
    with pytest.raises(ValidationError) as error:
        RecorderFactory(time_filter_1_enabled=True, time_filter_1_start=time(9, 30))
    assert "stop time" in error.value.message_dict["time_filter_1_stop"][0]


def test_an_unknown_time_zone_and_bad_targets_are_refused():
    with pytest.raises(ValidationError) as error:
        RecorderFactory(timezone="Mars/Olympus")
    assert "Unknown time zone" in error.value.message_dict["timezone"][0]
    with pytest.raises(ValidationError, match="more than 0"):
        RecorderFactory(tp_targets=[{"value": 0, "trim": 1}])
    with pytest.raises(ValidationError, match="At most 10"):
        RecorderFactory(tp_targets=[{"value": n + 1} for n in range(11)])


def test_recorder_names_are_unique_per_owner_with_a_clear_message():
    recorder = RecorderFactory(name="Trend")
    with pytest.raises(ValidationError, match="already have a recorder with this name"):
        RecorderFactory(owner=recorder.owner, name="trend")


def test_updating_targets_replaces_them_and_leaving_them_out_keeps_them():
    recorder = RecorderFactory(tp_targets=[{"value": 8, "trim": 1}, {"value": 16}])
    recorder_update(recorder=recorder, sl_enabled=True, sl_amount=Decimal(12))
    assert [t.as_item() for t in recorder.targets.all()] == [
        {"value": Decimal(8), "trim": 1},
        {"value": Decimal(16), "trim": None},
    ]
    recorder_update(recorder=recorder, tp_targets=[{"value": "4.5", "trim": 2}])
    assert [(t.number, t.value, t.trim) for t in recorder.targets.all()] == [(1, Decimal("4.5"), 2)]


def test_the_contract_cannot_change_while_the_virtual_position_is_open():
    recorder = RecorderFactory(symbol="ES")
    recorder_record_fill(
        recorder=recorder, action="buy", quantity=1, price=5000, at=datetime(2026, 3, 2, 15, tzinfo=UTC)
    )
    with pytest.raises(ValidationError, match="virtual position"):
        recorder_update(recorder=recorder, symbol="NQ")
    recorder_update(recorder=recorder, symbol="ESM6")  # same contract, another month
    recorder_reset_performance(recorder=recorder)
    recorder_update(recorder=recorder, symbol="NQ")


@pytest.mark.parametrize("symbol", ["ES", "ESZ6", "ES1!", "CME_MINI:ES1!", "es", "ESZ2026"])
def test_every_spelling_of_a_symbol_resolves_to_its_contract(symbol):
    assert selectors.contract_for_symbol(symbol).root == "ES"


def test_micro_and_unknown_symbols_resolve_correctly():
    assert selectors.contract_for_symbol("MESZ6").root == "MES"
    assert selectors.contract_for_symbol("M2K1!").tick_size == Decimal("0.1")
    with pytest.raises(SymbolError):
        selectors.contract_for_symbol("ZB1!")
    assert selectors.contract_or_none("ZB1!") is None


def test_a_contract_edited_in_the_admin_is_what_resolves():
    ContractSpec.objects.filter(root="ES").update(tick_value=Decimal("13.00"))
    assert selectors.contract_for_symbol("ES1!").tick_value == Decimal(13)


# --- settings for the risk engine and the plans -------------------------------------------------------------


def test_recorder_settings_map_onto_the_risk_and_plan_dataclasses():
    recorder = RecorderFactory(
        initial_position_size=2,
        direction_filter="long",
        time_filter_1_enabled=True,
        time_filter_1_start=time(8, 30),
        time_filter_1_stop=time(15, 0),
        max_daily_loss=Decimal(500),
        sl_enabled=True,
        sl_amount=Decimal(100),
        sl_units="dollars",
        sl_type="trailing",
        tp_units="points",
        tp_targets=[{"value": 4, "trim": 1}, {"value": 8}],
    )
    risk = selectors.recorder_risk_settings(recorder)
    assert risk.initial_position_size == 2
    assert risk.direction_filter is Direction.LONG
    assert risk.time_filter_1.enabled
    assert risk.time_filter_1.start == time(8, 30)
    assert risk.max_daily_loss == Decimal(500)
    assert risk.timezone == "America/Chicago"
    plan = selectors.recorder_plan_settings(recorder)
    assert plan.sl_units is OffsetUnit.DOLLARS
    assert plan.sl_type is StopKind.TRAILING
    assert plan.tp_targets == (TakeProfitTarget(Decimal(4), 1), TakeProfitTarget(Decimal(8), None))


def test_trader_overrides_win_and_empty_overrides_fall_back_to_the_recorder():
    recorder = RecorderFactory(
        initial_position_size=2, sl_enabled=True, sl_amount=Decimal(8), tp_targets=[{"value": 8}]
    )
    trader = TraderFactory(
        recorder=recorder, initial_position_size=5, sl_enabled=False, direction_filter="short"
    )
    risk = selectors.recorder_risk_settings(recorder, trader)
    assert risk.initial_position_size == 5
    assert risk.direction_filter is Direction.SHORT
    assert risk.add_position_size == 1  # not overridden
    plan = selectors.recorder_plan_settings(recorder, trader)
    assert not plan.places_stop
    assert plan.sl_amount == Decimal(8)
    assert plan.tp_targets == (TakeProfitTarget(Decimal(8)),)  # recorder's targets
    trader_update(trader=trader, tp_targets=[])
    assert selectors.recorder_plan_settings(recorder, trader).tp_targets == ()  # overridden with none
    trader_update(trader=trader, tp_targets=None)
    assert len(selectors.recorder_plan_settings(recorder, trader).tp_targets) == 1


# --- traders ------------------------------------------------------------------------------------------------


def test_a_trader_may_follow_a_public_recorder_of_another_user_but_not_a_private_one():
    public = RecorderFactory(is_private=False)
    private = RecorderFactory()
    account = BrokerAccountFactory()
    trader = trader_create(owner=account.owner, recorder=public, account=account)
    assert trader.subaccount_links.get().multiplier == 1
    with pytest.raises(ValidationError) as error:
        trader_create(owner=account.owner, recorder=private, account=account)
    assert "recorder" in error.value.message_dict


def test_a_trader_cannot_use_someone_elses_account_or_sub_account():
    recorder = RecorderFactory()
    own, foreign = BrokerAccountFactory(owner=recorder.owner), BrokerAccountFactory()
    with pytest.raises(ValidationError) as error:
        trader_create(owner=recorder.owner, recorder=recorder, account=foreign)
    assert "account" in error.value.message_dict
    foreign_sub = foreign.subaccounts.get()
    with pytest.raises(ValidationError, match="not an active sub-account"):
        trader_create(owner=recorder.owner, recorder=recorder, account=own, subaccounts=[(foreign_sub, 1)])


def test_a_trader_links_chosen_sub_accounts_by_broker_id_with_multipliers():
    account = TradovateAccountFactory()
    broker_account_sync_subaccounts(
        account=account, subaccounts=[SubAccount("11", "DEMO11", True), SubAccount("12", "DEMO12", True)]
    )
    recorder = RecorderFactory(owner=account.owner)
    with pytest.raises(ValidationError, match="Choose which of the 2 sub-accounts"):
        trader_create(owner=account.owner, recorder=recorder, account=account)
    with pytest.raises(ValidationError, match="at least 1"):
        trader_create(owner=account.owner, recorder=recorder, account=account, subaccounts=[("11", 0)])
    trader = trader_create(
        owner=account.owner, recorder=recorder, account=account, subaccounts=[("11", 1), ("12", 3)]
    )
    assert {(link.subaccount.broker_id, link.multiplier) for link in trader.subaccount_links.all()} == {
        ("11", 1),
        ("12", 3),
    }
    trader_update(trader=trader, subaccounts=[("12", 2)])
    assert [(link.subaccount.broker_id, link.multiplier) for link in trader.subaccount_links.all()] == [
        ("12", 2)
    ]


def test_a_second_trader_for_the_same_recorder_and_account_is_refused():
    trader = TraderFactory()
    with pytest.raises(ValidationError, match="already follows this recorder"):
        trader_create(owner=trader.account.owner, recorder=trader.recorder, account=trader.account)


def test_a_trader_override_that_turns_on_a_window_without_times_is_refused():
    trader = TraderFactory()
    with pytest.raises(ValidationError) as error:
        trader_update(trader=trader, time_filter_2_enabled=True)
    assert "here or on the recorder" in error.value.message_dict["time_filter_2_start"][0]
    trader_update(
        trader=trader, time_filter_2_enabled=True, time_filter_2_start=time(22), time_filter_2_stop=time(2)
    )
    assert selectors.recorder_risk_settings(trader.recorder, trader).time_filter_2.label == "22:00\u201302:00"


def test_signals_go_to_enabled_traders_and_to_strangers_only_while_the_recorder_is_public():
    recorder = RecorderFactory(is_private=False)
    mine = TraderFactory(recorder=recorder)
    theirs = TraderFactory(recorder=recorder, account=BrokerAccountFactory())
    TraderFactory(recorder=recorder, account=BrokerAccountFactory(owner=recorder.owner), enabled=False)
    assert set(selectors.traders_for_recorder(recorder)) == {mine, theirs}
    recorder_update(recorder=recorder, is_private=True)
    assert list(selectors.traders_for_recorder(recorder)) == [mine]
    assert not selectors.trader_can_follow(Recorder.objects.get(pk=recorder.pk).traders.get(pk=theirs.pk))


def test_traders_for_recorder_loads_links_and_targets_without_more_queries(django_assert_num_queries):
    recorder = RecorderFactory()
    for _ in range(3):
        TraderFactory(recorder=recorder, account=BrokerAccountFactory(owner=recorder.owner))
    with django_assert_num_queries(3):
        for trader in selectors.traders_for_recorder(recorder):
            assert [link.subaccount.broker_id for link in trader.subaccount_links.all()]
            list(trader.targets.all())
            assert trader.account.name


# --- virtual performance ------------------------------------------------------------------------------------


def test_virtual_fills_realize_pnl_in_dollars_through_the_point_value():
    recorder = RecorderFactory(symbol="ES1!")
    at = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    recorder_record_fill(recorder=recorder, action="buy", quantity=2, price="5000", at=at)
    recorder_record_fill(recorder=recorder, action="buy", quantity=2, price="5010", at=at)
    trade = recorder_record_fill(recorder=recorder, action="sell", quantity=1, price="5020.25", at=at)
    assert trade.realized_pnl == Decimal("762.50")  # (5020.25 - 5005) x 1 x $50
    assert (trade.position_after, trade.avg_price_after) == (3, Decimal("5005"))
    close = recorder_record_fill(recorder=recorder, action="close", quantity=0, price="4995", at=at)
    assert (close.action, close.quantity, close.realized_pnl) == ("sell", 3, Decimal("-1500.00"))
    book = selectors.recorder_book(recorder)
    assert (book.position, book.avg_price, book.realized_pnl) == (0, None, Decimal("-737.50"))


def test_a_fill_through_zero_reverses_the_position_at_the_fill_price():
    recorder = RecorderFactory(symbol="NQ")
    at = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    recorder_record_fill(recorder=recorder, action="sell", quantity=1, price=20000, at=at)
    trade = recorder_record_fill(recorder=recorder, action="buy", quantity=3, price=19990, at=at)
    assert trade.realized_pnl == Decimal("200.00")  # 10 points x $20
    assert (trade.position_after, trade.avg_price_after) == (2, Decimal(19990))


def test_a_close_while_flat_and_a_recorder_that_does_not_record_change_nothing():
    at = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    recorder = RecorderFactory()
    assert recorder_record_fill(recorder=recorder, action="close", quantity=0, price=1, at=at) is None
    quiet = RecorderFactory(recording_enabled=False)
    assert recorder_record_fill(recorder=quiet, action="buy", quantity=1, price=5000, at=at) is None
    assert not RecorderTrade.objects.exists()


def test_bad_fills_are_refused_before_anything_is_written():
    recorder = RecorderFactory()
    at = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    for kwargs in (
        {"action": "buy", "quantity": 0, "price": 5000, "at": at},
        {"action": "buy", "quantity": True, "price": 5000, "at": at},
        {"action": "buy", "quantity": 1, "price": 0, "at": at},
        {"action": "hold", "quantity": 1, "price": 5000, "at": at},
        {"action": "buy", "quantity": 1, "price": 5000, "at": datetime(2026, 3, 2, 15)},  # naive
    ):
        with pytest.raises(ValueError):  # noqa: PT011 - each message is checked by the pure modules' tests
            recorder_record_fill(recorder=recorder, **kwargs)
    assert not RecorderTrade.objects.exists()


def test_the_same_source_is_recorded_once():
    recorder = RecorderFactory()
    at = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    first = recorder_record_fill(
        recorder=recorder, action="buy", quantity=1, price=5000, at=at, source_key="signal:9"
    )
    again = recorder_record_fill(
        recorder=recorder, action="buy", quantity=1, price=5000, at=at, source_key="signal:9"
    )
    assert again.pk == first.pk
    assert selectors.recorder_book(recorder).position == 1


def test_pnl_is_booked_to_the_cme_session_that_starts_at_five_pm_chicago():
    recorder = RecorderFactory()
    fill = recorder_record_fill
    fill(recorder=recorder, action="buy", quantity=1, price=5000, at=chicago(2026, 3, 2, 16, 0))
    before_roll = fill(
        recorder=recorder, action="sell", quantity=1, price=5010, at=chicago(2026, 3, 2, 16, 59, 59)
    )
    fill(recorder=recorder, action="buy", quantity=1, price=5000, at=chicago(2026, 3, 2, 17, 0))
    after_roll = fill(recorder=recorder, action="sell", quantity=1, price=4990, at=chicago(2026, 3, 2, 18, 0))
    assert (before_roll.session.isoformat(), after_roll.session.isoformat()) == ("2026-03-02", "2026-03-03")
    assert selectors.recorder_session_pnl(recorder, at=chicago(2026, 3, 2, 16, 59)) == Decimal("500.00")
    assert selectors.recorder_session_pnl(recorder, at=chicago(2026, 3, 3, 9, 0)) == Decimal("-500.00")
    results = selectors.recorder_session_results(recorder)
    assert [(r.session.isoformat(), r.realized_pnl, r.trades) for r in results] == [
        ("2026-03-02", Decimal("500.00"), 2),
        ("2026-03-03", Decimal("-500.00"), 2),
    ]
    curve = selectors.recorder_equity_curve(recorder)
    assert [point.cumulative_pnl for point in curve] == [0, Decimal(500), Decimal(500), Decimal(0)]


def test_the_recorder_filters_count_signals_and_record_accepted_ones():
    recorder = RecorderFactory(signal_cooldown=60)
    at = chicago(2026, 3, 2, 9, 0)
    buy = recorder_signal_evaluate(
        recorder=recorder, signal=SignalInput("buy", at, price=Decimal(5000)), source_key="signal:1"
    )
    assert buy.allowed
    assert selectors.recorder_book(recorder).position == 1
    too_soon = recorder_signal_evaluate(
        recorder=recorder, signal=SignalInput("buy", at.replace(second=59), price=Decimal(5001))
    )
    assert not too_soon.allowed
    assert "Cooldown" in too_soon.reason
    close = recorder_signal_evaluate(recorder=recorder, signal=SignalInput("close", at, price=Decimal(5004)))
    assert close.allowed
    assert selectors.recorder_book(recorder).position == 0
    assert selectors.recorder_session_pnl(recorder, at=at) == Decimal("200.00")
    state = selectors.recorder_risk_state(recorder, at=at)
    assert (state.position, state.signals_this_session, state.signal_count) == (0, 1, 1)


def test_the_daily_loss_limit_reads_the_recorders_own_session_pnl():
    recorder = RecorderFactory(max_daily_loss=Decimal(400))
    at = chicago(2026, 3, 2, 9, 0)
    evaluate = recorder_signal_evaluate
    evaluate(recorder=recorder, signal=SignalInput("buy", at, price=Decimal(5000)))
    evaluate(recorder=recorder, signal=SignalInput("close", at, price=Decimal(4992)))  # -$400
    refused = evaluate(recorder=recorder, signal=SignalInput("buy", at, price=Decimal(4990)))
    assert not refused.allowed
    assert "Daily loss limit reached" in refused.reason
    next_session = evaluate(
        recorder=recorder, signal=SignalInput("buy", chicago(2026, 3, 2, 17, 0), price=Decimal(4990))
    )
    assert next_session.allowed


def test_a_signal_without_a_price_is_judged_and_the_book_catches_up_later():
    recorder = RecorderFactory()
    at = chicago(2026, 3, 2, 9, 0)
    recorder_signal_evaluate(recorder=recorder, signal=SignalInput("buy", at))
    assert selectors.recorder_book(recorder).position == 0
    assert selectors.recorder_risk_state(recorder, at=at).position == 1
    recorder_signal_evaluate(recorder=recorder, signal=SignalInput("buy", at, price=Decimal(5000)))
    assert selectors.recorder_book(recorder).position == 2  # moved to where the signals put the strategy


def test_the_dashboard_sums_todays_pnl_and_lists_open_positions(django_assert_max_num_queries):
    owner = UserFactory()
    at = chicago(2026, 3, 2, 9, 0)
    winner, holder = RecorderFactory(owner=owner), RecorderFactory(owner=owner, symbol="NQ")
    recorder_record_fill(recorder=winner, action="buy", quantity=1, price=5000, at=at)
    recorder_record_fill(recorder=winner, action="sell", quantity=1, price=5002, at=at)
    recorder_record_fill(recorder=holder, action="sell", quantity=2, price=20000, at=at)
    RecorderFactory()  # someone else's
    with django_assert_max_num_queries(3):
        summary = selectors.dashboard_summary(owner, at=at)
    assert summary.session_pnl == Decimal("100.00")
    assert [r.pk for r in summary.open_positions] == [holder.pk]
    assert len(summary.recorders) == 2
    assert summary.daily_pnl[-1].trades == 3
