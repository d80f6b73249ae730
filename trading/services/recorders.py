"""Recorders: settings, webhook tokens, and the recorder's virtual book of fills and performance."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction

from trading.models import (
    PLAN_SETTING_FIELDS,
    RISK_SETTING_FIELDS,
    SETTING_FIELDS,
    Recorder,
    RecorderPosition,
    RecorderTarget,
    RecorderTrade,
)
from trading.plans import TakeProfitTarget
from trading.risk import (
    Action,
    RecorderBook,
    RiskState,
    SignalInput,
    Verdict,
    evaluate,
)
from trading.risk import session_key as trading_day
from trading.selectors import (
    contract_for_symbol,
    position_risk_state,
    recorder_risk_settings,
    webhook_token_digest,
)
from trading.services.validation import (
    check_names,
    error_add,
    errors_raise,
    full_clean_errors,
    restored_on_error,
    save_unique,
    settings_errors,
    target_items,
    target_rows,
    targets_clean,
    time_filter_errors,
    timezone_errors,
)
from trading.symbols import ContractInfo, SymbolError, symbol_root, to_decimal

logger = logging.getLogger(__name__)


RECORDER_FIELDS = (
    "name",
    "strategy_type",
    "symbol",
    "enabled",
    "recording_enabled",
    "is_private",
    "max_signal_age",
    *SETTING_FIELDS,
)
WEBHOOK_TOKEN_BYTES = 32  # 256 bits; the brief asks for at least 128


def new_webhook_token() -> str:
    """Return a fresh webhook token: 32 random bytes, URL-safe (43 characters)."""
    return secrets.token_urlsafe(WEBHOOK_TOKEN_BYTES)


def _recorder_errors(recorder: Recorder, targets: Sequence[TakeProfitTarget]) -> dict[str, list]:
    errors: dict[str, list] = {}
    recorder.name = (recorder.name or "").strip()
    recorder.symbol = (recorder.symbol or "").strip().upper()
    if recorder.symbol:
        try:
            contract_for_symbol(recorder.symbol)
        except SymbolError as error:
            error_add(errors, "symbol", str(error))
    timezone_errors(recorder.timezone, errors)
    values = {name: getattr(recorder, name) for name in SETTING_FIELDS}
    time_filter_errors(values, errors)
    if not errors:
        plan = {name: values[name] for name in PLAN_SETTING_FIELDS}
        settings_errors(
            {name: values[name] for name in RISK_SETTING_FIELDS},
            {**plan, "tp_targets": target_items(targets)},
            errors,
        )
    full_clean_errors(recorder, errors)
    return errors


def recorder_create(*, owner, tp_targets: Iterable[Any] | None = (), **settings: Any) -> Recorder:
    """Create a recorder with a fresh webhook token; settings use the recorder API's names."""
    check_names(settings, RECORDER_FIELDS)
    targets = targets_clean(tp_targets)
    token = new_webhook_token()
    recorder = Recorder(
        owner=owner, webhook_token=token, webhook_token_hash=webhook_token_digest(token), **settings
    )
    errors_raise(_recorder_errors(recorder, targets))

    def save() -> None:
        recorder.save()
        RecorderTarget.objects.bulk_create(target_rows(RecorderTarget, {"recorder": recorder}, targets))
        RecorderPosition.objects.create(recorder=recorder)

    save_unique(recorder, {"name": "You already have a recorder with this name."}, save)
    logger.info("Recorder %s created for user %s", recorder.pk, owner.pk)
    return recorder


def recorder_update(
    *, recorder: Recorder, tp_targets: Iterable[Any] | None = None, **settings: Any
) -> Recorder:
    """Change a recorder's settings; `tp_targets` None keeps its targets, a list replaces them."""
    check_names(settings, RECORDER_FIELDS)
    with restored_on_error(recorder, {"name", "symbol", *settings}):
        _update_recorder(recorder, tp_targets, settings)
    logger.info("Recorder %s updated", recorder.pk)
    return recorder


def _update_recorder(recorder: Recorder, tp_targets: Iterable[Any] | None, settings: dict[str, Any]) -> None:
    old_symbol = recorder.symbol
    for name, value in settings.items():
        setattr(recorder, name, value)
    targets = targets_clean(tp_targets) if tp_targets is not None else None
    current_targets = targets
    if current_targets is None:
        current_targets = [TakeProfitTarget(t.value, t.trim) for t in recorder.targets.all()]
    errors = _recorder_errors(recorder, current_targets)
    if "symbol" not in errors and _root(recorder.symbol) != _root(old_symbol):
        book = RecorderPosition.objects.filter(recorder=recorder).exclude(quantity=0).first()
        if book is not None:
            error_add(
                errors,
                "symbol",
                f"This recorder holds a virtual position of {book.quantity:+d} {_root(old_symbol)}: "
                "reset its performance (or let a close signal flatten it) before changing the contract.",
            )
    errors_raise(errors)

    def save() -> None:
        recorder.save()
        if targets is not None:
            recorder.targets.all().delete()
            RecorderTarget.objects.bulk_create(target_rows(RecorderTarget, {"recorder": recorder}, targets))

    save_unique(recorder, {"name": "You already have a recorder with this name."}, save)
    if targets is not None and hasattr(recorder, "_prefetched_objects_cache"):
        recorder._prefetched_objects_cache.pop("targets", None)


def _root(symbol: str) -> str:
    try:
        return symbol_root(symbol)
    except SymbolError:
        return symbol


def recorder_delete(*, recorder: Recorder) -> None:
    """Delete a recorder, its performance and the traders that follow it."""
    recorder_id = recorder.pk
    recorder.delete()
    logger.info("Recorder %s deleted", recorder_id)


def recorder_regenerate_webhook_token(*, recorder: Recorder) -> str:
    """Give the recorder a new webhook token; the old URL stops working at once. Returns the new token."""
    token = new_webhook_token()
    recorder.webhook_token = token
    recorder.webhook_token_hash = webhook_token_digest(token)
    recorder.save(update_fields=["webhook_token", "webhook_token_hash", "updated_at"])
    logger.info("Recorder %s has a new webhook token", recorder.pk)
    return token


def _locked_position(recorder: Recorder) -> RecorderPosition:
    """Return the recorder's position row locked for this transaction (created when missing)."""
    RecorderPosition.objects.get_or_create(recorder=recorder)
    # The lock serialises every writer of this recorder's book and counters until the transaction ends.
    return RecorderPosition.objects.select_for_update().get(recorder=recorder)


def _apply_fill(
    row: RecorderPosition,
    *,
    signed_quantity: int,
    price: Decimal,
    at: datetime,
    contract: ContractInfo,
    source_key: str,
) -> RecorderTrade:
    book = RecorderBook(row.quantity, row.avg_price, row.realized_pnl)
    new_book, realized = book.fill(signed_quantity, price, contract)
    row.quantity, row.avg_price, row.realized_pnl = (
        new_book.position,
        new_book.avg_price,
        new_book.realized_pnl,
    )
    row.save(update_fields=["quantity", "avg_price", "realized_pnl", "updated_at"])
    return RecorderTrade.objects.create(
        recorder_id=row.recorder_id,
        executed_at=at,
        session=trading_day(at),
        action=RecorderTrade.Action.BUY if signed_quantity > 0 else RecorderTrade.Action.SELL,
        quantity=abs(signed_quantity),
        price=price,
        position_after=new_book.position,
        avg_price_after=new_book.avg_price,
        realized_pnl=realized,
        cumulative_pnl=new_book.realized_pnl,
        source_key=source_key,
    )


def _fill_price(price: Decimal | int | str) -> Decimal:
    value = to_decimal(price, name="price")
    if value <= 0:
        raise ValueError(f"A fill price must be more than 0, not {value}.")
    return value


def recorder_record_fill(
    *,
    recorder: Recorder,
    action: str,
    quantity: int,
    price: Decimal | int | str,
    at: datetime,
    source_key: str = "",
) -> RecorderTrade | None:
    """Apply a virtual fill (buy, sell or close) to the recorder's book and store the trade with its P&L."""
    # Returns None when nothing changed: recording is off, or a close found the book flat. The same non-empty
    # `source_key` (e.g. "signal:42") is recorded once; a repeat returns the first trade.
    action = Action.parse(action)
    price = _fill_price(price)
    if action is not Action.CLOSE and (
        isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1
    ):
        raise ValueError(f"A fill quantity must be a whole number of at least 1, not {quantity!r}.")
    trading_day(at)  # rejects a naive datetime before anything is written
    if not recorder.recording_enabled:
        return None
    contract = contract_for_symbol(recorder.symbol)
    with transaction.atomic():
        row = _locked_position(recorder)
        if source_key:
            earlier = RecorderTrade.objects.filter(recorder=recorder, source_key=source_key).first()
            if earlier is not None:
                return earlier
        signed = {Action.BUY: quantity, Action.SELL: -quantity, Action.CLOSE: -row.quantity}[action]
        if signed == 0:
            return None
        return _apply_fill(
            row, signed_quantity=signed, price=price, at=at, contract=contract, source_key=source_key
        )


def _store_state(row: RecorderPosition, state: RiskState) -> None:
    row.signal_position = state.position
    row.last_signal_at = state.last_signal_at
    row.signals_this_session = state.signals_this_session
    row.signal_count = state.signal_count
    row.session = state.session
    row.save(
        update_fields=[
            "signal_position",
            "last_signal_at",
            "signals_this_session",
            "signal_count",
            "session",
            "updated_at",
        ]
    )


def recorder_signal_evaluate(*, recorder: Recorder, signal: SignalInput, source_key: str = "") -> Verdict:
    """Run the recorder's own filters on a signal; store their counters and, when recording, its fill."""
    # The whole step holds the recorder's row lock. The book moves to the verdict's position at the signal's
    # price (a signal without a price is judged but moves no book). The caller claims the signal first:
    # running this twice for one signal counts it twice.
    settings = recorder_risk_settings(recorder)
    contract = contract_for_symbol(recorder.symbol) if recorder.recording_enabled else None
    with transaction.atomic():
        row = _locked_position(recorder)
        verdict = evaluate(signal, settings, position_risk_state(row, at=signal.received_at))
        _store_state(row, verdict.state)
        if verdict.allowed and contract is not None and signal.price is not None and signal.price > 0:
            # Toward the verdict's position, not by its delta: a book that missed a signal catches up.
            signed = verdict.position_after - row.quantity
            if signed:
                _apply_fill(
                    row,
                    signed_quantity=signed,
                    price=signal.price,
                    at=signal.received_at,
                    contract=contract,
                    source_key=source_key,
                )
    return verdict


def recorder_reset_performance(*, recorder: Recorder) -> None:
    """Forget the recorder's virtual trades and flatten its book (its filter counters are kept)."""
    with transaction.atomic():
        row = _locked_position(recorder)
        RecorderTrade.objects.filter(recorder=recorder).delete()
        row.quantity, row.avg_price, row.realized_pnl = 0, None, Decimal("0.00")
        row.save(update_fields=["quantity", "avg_price", "realized_pnl", "updated_at"])
    logger.info("Recorder %s performance reset", recorder.pk)
