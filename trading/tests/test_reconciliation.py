"""Reconciliation against the fake Tradovate over real HTTP: settling unknown orders, repairing protection,
cancelling orphans, auto-flat, the dry run, the command and the per-account tasks."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from trading import tasks
from trading.brokers.base import SubAccount
from trading.models import BrokerAccount, Order, Position, ReconcileAction, ReconcileRun
from trading.services.broker_accounts import (
    broker_account_mark_needs_attention,
    broker_account_sync_subaccounts,
)
from trading.services.killswitches import killswitch_set
from trading.services.reconciliation.run import account_reconcile, accounts_to_reconcile, reconcile_runs_prune
from trading.services.recorders import recorder_update
from trading.tests.execution_support import *  # noqa: F403  fixtures
from trading.tests.execution_support import make_trader, stored_signal
from trading.tests.factories import RecorderFactory, TraderFactory, TradovateAccountFactory
from trading.tests.fake_tradovate import DEMO_ACCOUNT_ID, DEMO_ACCOUNT_NAME, PASSWORD, USERNAME
from trading.tests.test_tradovate_pipeline import *  # noqa: F403  fixtures
from trading.tests.test_tradovate_pipeline import (
    CANCEL,
    LIQUIDATE,
    OCO,
    OSO,
    PLACE,
    order_changes,
    orders,
    reconcile,
    send_alert,
    trade_on,
)

pytestmark = pytest.mark.django_db

LATER = timedelta(seconds=45)  # past the grace period of unknown orders


@pytest.fixture
def alert(client, task_queue, django_capture_on_commit_callbacks):
    """Send an alert through the webhook and the pipeline."""

    def send(recorder, **fields):
        return send_alert(client, recorder, django_capture_on_commit_callbacks, task_queue, **fields)

    return send


@pytest.fixture
def two_targets(owner):
    """An ES recorder trading 2 contracts with two take-profit/stop pairs: two brackets of one contract."""
    return RecorderFactory(
        owner=owner,
        symbol="ES",
        initial_position_size=2,
        tp_targets=[{"value": 4, "trim": 1}, {"value": 8, "trim": None}],
        sl_enabled=True,
        sl_amount=Decimal(8),
    )


def working_at_broker(fake) -> list[dict]:
    with fake.lock:
        return [
            fake.order(order_id) for order_id, row in fake.orders.items() if row["ordStatus"] == "Working"
        ]


# --- missing protection -------------------------------------------------------------------------------------


def test_a_take_profit_cancelled_at_the_broker_is_placed_again_once_as_an_oco_pair_with_its_stop(
    fake, account, recorder, alert
):
    trade_on(recorder, account)
    alert(recorder)
    reconcile(account)
    take_profit, stop = Order.objects.get(plan_key="tp1"), Order.objects.get(plan_key="sl1")
    with fake.lock:
        fake.orders[int(take_profit.broker_order_id)]["ordStatus"] = (
            "Canceled"  # cancelled by hand at Tradovate
        )
    before = len(order_changes(fake))

    report = reconcile(account)

    (cancel_path, cancel_body), (oco_path, oco_body) = order_changes(fake)[before:]
    # The lone stop is cancelled first (never stacked), then both go out again as one OCO pair.
    assert (cancel_path, cancel_body) == (CANCEL, {"orderId": int(stop.broker_order_id), "isAutomated": True})
    new_tp = Order.objects.get(client_id=oco_body["clOrdId"])
    new_sl = Order.objects.get(client_id=oco_body["other"]["clOrdId"])
    assert oco_path == OCO
    assert oco_body == {
        "accountSpec": DEMO_ACCOUNT_NAME,
        "accountId": DEMO_ACCOUNT_ID,
        "clOrdId": new_tp.client_id,
        "action": "Sell",
        "symbol": "ESZ6",
        "orderQty": 1,
        "orderType": "Limit",
        "price": 5002,
        "timeInForce": "GTC",
        "isAutomated": True,
        "other": {
            "action": "Sell",
            "orderType": "Stop",
            "stopPrice": 4998,
            "timeInForce": "GTC",
            "clOrdId": new_sl.client_id,
        },
    }
    assert (new_tp.role, new_tp.status, new_sl.role, new_sl.status) == (
        "take_profit",
        "working",
        "stop_loss",
        "working",
    )
    assert new_tp.oco_group == new_sl.oco_group != stop.oco_group
    assert {new_tp.decision_id, new_sl.decision_id} == {stop.decision_id}
    assert Order.objects.get(pk=stop.pk).status == "cancelled"
    assert [step.kind for step in report.steps] == [
        "order_status",
        "cancel_replaced",
        "place_protection",
        "place_protection",
    ]
    action = ReconcileAction.objects.filter(kind="place_protection").first()
    assert "take-profits cover 0 of 1" in action.reason

    again = reconcile(account)
    assert len(order_changes(fake)) == before + 2  # never stacked
    assert again.steps == []
    assert sorted(order["orderType"] for order in working_at_broker(fake)) == ["Limit", "Stop"]


def test_a_bracket_whose_request_never_arrived_is_settled_as_not_placed_and_never_sent_again(
    fake, account, two_targets, alert
):
    trade_on(two_targets, account)
    fake.drop_next(OSO, process=False, skip=1)  # the first bracket arrives; the second is lost unread

    alert(two_targets)

    placed = orders(broker_account=account)
    lost = ("entry2", "tp2", "sl2")
    assert {placed[key].status for key in lost} == {"unknown"}
    lost_ids = {placed[key].client_id for key in lost}
    assert len(fake.bodies(OSO)) == 2

    report = reconcile(account, now=timezone.now() + LATER)

    assert {Order.objects.get(pk=placed[key].pk).status for key in lost} == {"failed"}
    settles = [step for step in report.steps if step.kind == "settle"]
    assert len(settles) == 3
    assert all("never placed and is not sent again" in step.reason for step in settles)
    assert all(fake.orders_with_client_id(client_id) == [] for client_id in lost_ids)  # never sent again
    # One contract was bought, with its own bracket: it is whole, so nothing is placed to protect it.
    assert fake.position(DEMO_ACCOUNT_ID, "ESZ6") == 1
    assert sorted((order["orderType"], order["orderQty"]) for order in working_at_broker(fake)) == [
        ("Limit", 1),
        ("Stop", 1),
    ]
    assert "place_protection" not in {step.kind for step in report.steps}
    assert len(fake.bodies(OSO)) == 2
    assert fake.bodies(OCO) == fake.bodies(PLACE) == []


def test_protection_that_no_longer_fits_the_position_is_cancelled_first_then_replaced_whole(
    fake, account, recorder, alert
):
    trade_on(recorder, account)
    alert(recorder)
    reconcile(account)
    old = orders(broker_account=account)
    # One more contract bought by hand at Tradovate: the exits now cover half the position.
    _token, _ = fake.issue_token()
    with fake.lock:
        fake._place_order(
            {
                "accountSpec": DEMO_ACCOUNT_NAME,
                "accountId": DEMO_ACCOUNT_ID,
                "action": "Buy",
                "symbol": "ESZ6",
                "orderQty": 1,
                "orderType": "Market",
                "isAutomated": True,
            }
        )
    before = len(order_changes(fake))

    report = reconcile(account)

    changes = order_changes(fake)[before:]
    assert [path for path, _ in changes] == [CANCEL, CANCEL, OCO]
    assert {body["orderId"] for _, body in changes[:2]} == {
        int(old["tp1"].broker_order_id),
        int(old["sl1"].broker_order_id),
    }
    pair = changes[2][1]
    assert (pair["orderType"], pair["orderQty"], pair["price"]) == ("Limit", 2, 5002)
    assert (pair["other"]["orderType"], pair["other"]["stopPrice"]) == ("Stop", 4998)
    fresh = [
        Order.objects.get(client_id=pair["clOrdId"]),
        Order.objects.get(client_id=pair["other"]["clOrdId"]),
    ]
    assert fresh[0].oco_group == fresh[1].oco_group != ""
    assert {order.decision_id for order in fresh} == {old["entry"].decision_id}
    assert Order.objects.get(pk=old["tp1"].pk).status == "cancelled"
    kinds = [step.kind for step in report.steps]
    assert kinds.count("cancel_replaced") == 2
    assert kinds.count("place_protection") == 2
    assert kinds.index("cancel_replaced") < kinds.index("place_protection")


def test_a_pair_the_broker_refuses_is_logged_verbatim_and_the_stop_put_back_alone(
    fake, account, recorder, alert
):
    trade_on(recorder, account)
    alert(recorder)
    reconcile(account)
    stop = Order.objects.get(plan_key="sl1")
    with fake.lock:
        fake.orders[int(Order.objects.get(plan_key="tp1").broker_order_id)]["ordStatus"] = "Canceled"
    fake.refuse_next(OCO, reason="InvalidPrice", text="Limit price is outside the daily price limits.")

    reconcile(account)
    report = reconcile(account)

    refused = ReconcileAction.objects.filter(kind="place_protection", order__status="rejected").first()
    assert refused.order.error == "Limit price is outside the daily price limits."
    assert "Limit price is outside the daily price limits." in refused.reason
    # The position is never left without the stop it had: it goes back alone, at its own price.
    [alone] = fake.bodies(PLACE)
    assert (alone["orderType"], alone["stopPrice"], alone["orderQty"]) == ("Stop", 4998, 1)
    assert [order["orderType"] for order in working_at_broker(fake)] == ["Stop"]
    assert Order.objects.get(pk=stop.pk).status == "cancelled"
    # Not tried again at once: the same request would be refused again.
    assert len(fake.bodies(OCO)) == 1
    assert any("refused" in note for note in report.notes)


def test_protective_orders_placed_outside_justtrades_are_never_stacked_on(fake, account, recorder, alert):
    trade_on(recorder, account)
    alert(recorder)
    reconcile(account)
    with fake.lock:
        fake._place_order(
            {
                "accountSpec": DEMO_ACCOUNT_NAME,
                "accountId": DEMO_ACCOUNT_ID,
                "clOrdId": "placed-by-hand",
                "action": "Sell",
                "symbol": "ESZ6",
                "orderQty": 1,
                "orderType": "Stop",
                "stopPrice": 4990,
                "isAutomated": True,
            }
        )
    before = len(order_changes(fake))

    report = reconcile(account)

    assert order_changes(fake)[before:] == []
    assert report.steps == []
    assert any("outside JustTrades" in note for note in report.notes)


def test_a_position_opened_by_hand_at_the_broker_is_left_alone(fake, account, recorder):
    trade_on(recorder, account)
    with fake.lock:
        fake._place_order(
            {
                "accountSpec": DEMO_ACCOUNT_NAME,
                "accountId": DEMO_ACCOUNT_ID,
                "action": "Buy",
                "symbol": "ESZ6",
                "orderQty": 1,
                "orderType": "Market",
                "isAutomated": True,
            }
        )

    report = reconcile(account)

    assert order_changes(fake) == []
    assert Position.objects.get(broker_account=account, symbol="ES").quantity == 1  # recorded, not touched
    assert any("no order of JustTrades opened it" in note for note in report.notes)


def test_the_kill_switch_stops_reconciliation_from_sending_orders(fake, account, recorder, alert):
    trade_on(recorder, account)
    alert(recorder)
    reconcile(account)
    with fake.lock:
        fake.orders[int(Order.objects.get(plan_key="tp1").broker_order_id)]["ordStatus"] = "Canceled"
    killswitch_set(engaged=True, account=account, reason="testing")
    before = len(order_changes(fake))

    report = reconcile(account)

    assert order_changes(fake)[before:] == []
    assert any("kill switch" in note for note in report.notes)


# --- flat positions -----------------------------------------------------------------------------------------


def test_the_exits_left_on_a_position_closed_by_hand_are_cancelled(fake, account, recorder, alert):
    trade_on(recorder, account)
    alert(recorder)
    reconcile(account)
    exits = [Order.objects.get(plan_key=key) for key in ("tp1", "sl1")]
    with fake.lock:  # the trader sells at market in Tradovate's own window; the bracket stays on the book
        fake._place_order(
            {
                "accountSpec": DEMO_ACCOUNT_NAME,
                "accountId": DEMO_ACCOUNT_ID,
                "action": "Sell",
                "symbol": "ESZ6",
                "orderQty": 1,
                "orderType": "Market",
                "isAutomated": True,
            }
        )
    assert len(working_at_broker(fake)) == 2
    before = len(order_changes(fake))

    reconcile(account)

    changes = order_changes(fake)[before:]
    assert sorted(changes, key=lambda change: change[1]["orderId"]) == sorted(
        [(CANCEL, {"orderId": int(order.broker_order_id), "isAutomated": True}) for order in exits],
        key=lambda change: change[1]["orderId"],
    )
    assert working_at_broker(fake) == []
    assert {Order.objects.get(pk=order.pk).status for order in exits} == {"cancelled"}
    assert Position.objects.get(broker_account=account, symbol="ES").quantity == 0
    orphans = ReconcileAction.objects.filter(kind="cancel_orphan")
    assert {action.order_id for action in orphans} == {order.pk for order in exits}
    assert all("nothing left for it to protect" in action.reason for action in orphans)


def test_a_liquidation_whose_answer_was_lost_is_settled_from_the_flat_position(
    fake, account, recorder, alert
):
    trade_on(recorder, account)
    alert(recorder)
    reconcile(account)
    fake.drop_next(LIQUIDATE, process=True)

    alert(recorder, action="close", price=5001)

    exit_order = Order.objects.get(role="exit")
    assert exit_order.status == "unknown"
    report = reconcile(account, now=timezone.now() + LATER)

    exit_order.refresh_from_db()
    [liquidation] = [
        order for order in fake.orders.values() if order["id"] == int(exit_order.broker_order_id)
    ]
    assert exit_order.status == "filled"
    assert exit_order.filled_quantity == 1
    assert liquidation["ordStatus"] == "Filled"
    assert len(fake.bodies(LIQUIDATE)) == 1
    assert any(step.kind == "settle" and "went through" in step.reason for step in report.steps)


def test_a_liquidation_that_never_reached_tradovate_is_sent_again_once_the_position_shows_it(
    fake, account, recorder, alert
):
    trade_on(recorder, account)
    alert(recorder)
    reconcile(account)
    fake.drop_next(LIQUIDATE, process=False)

    alert(recorder, action="close", price=5001)

    lost = Order.objects.get(role="exit")
    assert lost.status == "unknown"
    assert fake.position(DEMO_ACCOUNT_ID, "ESZ6") == 1
    report = reconcile(account, now=timezone.now() + LATER)

    lost.refresh_from_db()
    assert lost.status == "failed"
    assert "did not take effect" in lost.error
    assert len(fake.bodies(LIQUIDATE)) == 2  # the lost one and the one sent after reading the position
    assert fake.position(DEMO_ACCOUNT_ID, "ESZ6") == 0
    again = Order.objects.get(plan_key="flatten")
    assert again.status == "filled"
    assert [step.kind for step in report.steps][:2] == ["settle", "flatten"]
    reconcile(account, now=timezone.now() + LATER)
    assert len(fake.bodies(LIQUIDATE)) == 2


# --- auto-flat ----------------------------------------------------------------------------------------------


def _window_excluding_now(zone: str = "America/Chicago") -> dict:
    local = datetime.now(ZoneInfo(zone))
    return {
        "time_filter_1_enabled": True,
        "time_filter_1_start": (local + timedelta(hours=2)).time().replace(second=0, microsecond=0),
        "time_filter_1_stop": (local + timedelta(hours=3)).time().replace(second=0, microsecond=0),
        "auto_flat_after_cutoff": True,
    }


def test_a_position_after_the_recorders_cutoff_is_liquidated_once_when_auto_flat_is_on(
    fake, account, recorder, alert
):
    trade_on(recorder, account)
    alert(recorder)
    reconcile(account)
    recorder_update(recorder=recorder, **_window_excluding_now())

    report = reconcile(account)

    assert fake.bodies(LIQUIDATE) == [
        {"accountId": DEMO_ACCOUNT_ID, "contractId": fake.contract_id("ESZ6"), "admin": False}
    ]
    assert fake.position(DEMO_ACCOUNT_ID, "ESZ6") == 0
    [step] = [step for step in report.steps if step.kind == "flatten"]
    assert "Auto-flat" in step.reason
    assert recorder.name in step.reason
    flatten = Order.objects.get(plan_key="flatten")
    assert flatten.via_liquidation
    assert flatten.trader is not None
    reconcile(account)
    assert len(fake.bodies(LIQUIDATE)) == 1
    flatten.refresh_from_db()
    assert flatten.status == "filled"


def test_auto_flat_also_closes_a_paper_position(task_queue, owner):
    recorder = RecorderFactory(owner=owner, symbol="ES")
    trader = make_trader(recorder)
    task_queue.publish("signal_process", stored_signal(recorder).pk)
    task_queue.run()
    assert Position.objects.get(broker_account=trader.account).quantity == 1
    recorder_update(recorder=recorder, **_window_excluding_now())

    report = reconcile(trader.account)

    assert [step.kind for step in report.steps if step.kind == "flatten"] == ["flatten"]
    assert Position.objects.get(broker_account=trader.account).quantity == 0
    assert Order.objects.get(plan_key="flatten").status == "filled"


# --- dry run ------------------------------------------------------------------------------------------------


def test_a_dry_run_reports_what_it_would_do_and_changes_nothing_anywhere(fake, account, recorder, alert):
    trade_on(recorder, account)
    alert(recorder)
    with fake.lock:
        fake.orders[int(Order.objects.get(plan_key="tp1").broker_order_id)]["ordStatus"] = "Canceled"
    BrokerAccount.objects.filter(pk=account.pk).update(access_token="", access_token_expires_at=None)
    statuses = dict(Order.objects.values_list("pk", "status"))
    before = len(order_changes(fake))

    report = reconcile(account, dry_run=True)

    kinds = [step.kind for step in report.steps]
    assert "order_status" in kinds
    assert "fills" in kinds
    assert "position" in kinds
    planned = [step.reason for step in report.steps if step.kind == "place_protection"]
    assert len(planned) == 2
    assert "Would place Sell 1 ES limit at 5002" in planned[0]
    assert "Would place Sell 1 ES stop at 4998" in planned[1]
    assert order_changes(fake)[before:] == []
    assert dict(Order.objects.values_list("pk", "status")) == statuses
    assert not Position.objects.exists()
    assert not ReconcileRun.objects.exists()
    assert not ReconcileAction.objects.exists()
    assert BrokerAccount.objects.get(pk=account.pk).access_token == ""  # it logged in, and kept nothing

    real = reconcile(account)
    assert [step.kind for step in real.steps if step.kind == "place_protection"] == ["place_protection"] * 2


# --- the command and the tasks ------------------------------------------------------------------------------


def test_the_command_reconciles_every_account_in_use_and_ends_with_a_summary(fake, account, recorder, alert):
    trade_on(recorder, account)
    alert(recorder)
    out = io.StringIO()

    call_command("reconcile", "--dry-run", "--account", account.name, stdout=out)
    assert "Dry run" in out.getvalue()
    assert "would order_status" in out.getvalue()
    assert out.getvalue().strip().endswith("0 failed.")
    assert "would take" in out.getvalue()
    assert not ReconcileRun.objects.exists()

    out = io.StringIO()
    call_command("reconcile", stdout=out)
    assert f"[1/1] {account.name}" in out.getvalue()
    assert "Reconciled 1 account(s): took" in out.getvalue()
    run = ReconcileRun.objects.get()
    assert (run.trigger, run.status, run.actions_count) == ("command", "succeeded", run.actions.count())


def test_the_command_fails_with_a_non_zero_exit_when_an_account_cannot_be_reconciled(account):
    broker_account_mark_needs_attention(
        account=account, reason="credentials", message="Tradovate refused the password."
    )
    err = io.StringIO()

    with pytest.raises(CommandError, match="1 failed"):
        call_command("reconcile", "--account", str(account.pk), stdout=io.StringIO(), stderr=err)
    assert "Tradovate refused the password." in err.getvalue()
    with pytest.raises(CommandError, match="no broker account"):
        call_command("reconcile", "--account", "nobody")


def test_an_unreachable_broker_fails_the_run_and_records_why(fake, account, recorder, alert, settings):
    trade_on(recorder, account)
    alert(recorder)
    settings.TRADOVATE_DEMO_URL = "http://127.0.0.1:9/v1"

    report = account_reconcile(account_id=account.pk)

    assert not report.ok
    assert "safe to try again" in report.error
    run = ReconcileRun.objects.get()
    assert run.status == "failed"
    assert run.error == report.error
    assert run.actions.get().kind == "error"


def test_an_unreachable_account_never_keeps_the_command_from_reconciling_the_others(
    owner, tradovate_settings, fake, recorder, alert
):
    # The live login is created first, so the command reaches it (and fails on it) before the demo one.
    live = TradovateAccountFactory(owner=owner, name="Live 100K", is_demo=False, password="live-password")
    broker_account_sync_subaccounts(account=live, subaccounts=[SubAccount("777", "LIVE777", True)])
    TraderFactory(recorder=RecorderFactory(owner=owner, symbol="ES"), account=live, subaccounts=[("777", 1)])
    demo = TradovateAccountFactory(owner=owner, name="Apex 50K", username=USERNAME, password=PASSWORD)
    broker_account_sync_subaccounts(
        account=demo, subaccounts=[SubAccount(str(DEMO_ACCOUNT_ID), DEMO_ACCOUNT_NAME, True)]
    )
    trade_on(recorder, demo)
    alert(recorder)
    assert accounts_to_reconcile() == [live.pk, demo.pk]
    out, err = io.StringIO(), io.StringIO()

    with pytest.raises(CommandError, match="1 failed"):
        call_command("reconcile", stdout=out, stderr=err)

    assert "[1/2] Live 100K: failed" in out.getvalue()
    assert "[2/2] Apex 50K:" in out.getvalue()
    assert "Could not connect to Tradovate" in err.getvalue()
    failed = ReconcileRun.objects.get(broker_account=live)
    assert (failed.trigger, failed.status) == ("command", "failed")
    assert "Could not connect to Tradovate, so nothing was sent" in failed.error
    assert failed.actions.get().kind == "error"
    succeeded = ReconcileRun.objects.get(broker_account=demo)
    assert (succeeded.trigger, succeeded.status, succeeded.error) == ("command", "succeeded", "")
    assert {"fills", "position"} <= set(succeeded.actions.values_list("kind", flat=True))
    assert Order.objects.get(broker_account=demo, plan_key="entry").status == "filled"
    position = Position.objects.get(broker_account=demo, account_id=str(DEMO_ACCOUNT_ID), symbol="ES")
    assert (position.quantity, position.avg_price) == (1, Decimal("5000"))
    assert BrokerAccount.objects.get(pk=live.pk).status == "active"  # unreachable is not the owner's fault


def test_only_accounts_in_use_are_reconciled_and_each_in_its_own_task(account, recorder, owner, monkeypatch):
    trade_on(recorder, account)
    paper = make_trader(RecorderFactory(owner=owner, symbol="NQ")).account
    idle = BrokerAccount.objects.create(owner=owner, name="Idle", kind="paper")
    blocked = make_trader(RecorderFactory(owner=owner, symbol="ES")).account
    BrokerAccount.objects.filter(pk=blocked.pk).update(status="needs_attention", status_reason="credentials")
    queued = []
    monkeypatch.setattr(
        tasks.reconcile_account, "apply_async", lambda args, expires: queued.append((args, expires))
    )

    count = tasks.reconcile_all()

    assert count == 2
    assert queued == [([account.pk], 55), ([paper.pk], 55)] or queued == [
        ([paper.pk], 55),
        ([account.pk], 55),
    ]
    assert idle.pk not in [args[0] for args, _ in queued]


def test_a_second_reconciliation_of_the_same_account_waits_its_turn(fake, account, recorder):
    trade_on(recorder, account)
    running = timezone.now() + timedelta(seconds=60)
    BrokerAccount.objects.filter(pk=account.pk).update(reconcile_until=running)  # another worker's run

    report = account_reconcile(account_id=account.pk)

    assert report.ok
    assert report.steps == []
    assert "running" in report.notes[0]
    assert fake.requests == []
    assert BrokerAccount.objects.get(pk=account.pk).reconcile_until == running  # left to its holder


def test_a_reconciliation_left_behind_by_a_dead_worker_lapses_and_a_finished_one_frees_the_account(
    fake, account, recorder, alert
):
    trade_on(recorder, account)
    alert(recorder)
    lapsed = timezone.now() - timedelta(seconds=1)
    BrokerAccount.objects.filter(pk=account.pk).update(reconcile_until=lapsed)

    report = account_reconcile(account_id=account.pk)

    assert report.ok
    assert not report.notes
    assert {step.kind for step in report.steps} >= {"fills", "position"}
    assert BrokerAccount.objects.get(pk=account.pk).reconcile_until is None


def test_old_runs_are_pruned(account):
    old = ReconcileRun.objects.create(
        broker_account=account, trigger="schedule", started_at=timezone.now() - timedelta(days=91)
    )
    recent = ReconcileRun.objects.create(
        broker_account=account, trigger="schedule", started_at=timezone.now()
    )

    assert reconcile_runs_prune() == 1
    assert list(ReconcileRun.objects.values_list("pk", flat=True)) == [recent.pk]
    assert old.pk != recent.pk


def test_the_account_page_shows_what_reconciliation_did(fake, account, recorder, alert, client):
    trade_on(recorder, account)
    alert(recorder)
    reconcile(account)
    client.force_login(account.owner)

    page = client.get(f"/broker-accounts/{account.pk}").content.decode()

    assert "Reconciliation" in page
    assert "as the broker holds it" in page
