"""Validation shared by the settings services: field names, targets, trading hours, time zones."""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, transaction

from trading.models import (
    MAX_TP_TARGETS,
)
from trading.plans import PlanSettings, TakeProfitTarget
from trading.risk import (
    RiskSettings,
)


class Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = Unset()  # "leave as it is", where None is a meaningful value


def check_names(values: Mapping[str, Any], allowed: Sequence[str]) -> None:
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise TypeError(f"Unknown field(s): {', '.join(unknown)}.")


def error_add(errors: dict[str, list], field: str, message: str) -> None:
    errors.setdefault(field, []).append(message)


def errors_merge(errors: dict[str, list], error: ValidationError) -> None:
    for field, messages in error.message_dict.items():
        for message in messages:
            if message not in errors.get(field, []):
                error_add(errors, field, message)


def targets_clean(items: Iterable[Any] | None) -> list[TakeProfitTarget]:
    """Return take-profit targets from `[{"value": 8, "trim": 1}]`, or raise ValidationError on tp_targets."""
    if items is None:
        return []
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
        raise ValidationError(
            {"tp_targets": 'Take-profit targets must be a list such as [{"value": 8, "trim": 1}].'}
        )
    items = list(items)
    if len(items) > MAX_TP_TARGETS:
        raise ValidationError(
            {"tp_targets": f"At most {MAX_TP_TARGETS} take-profit targets, not {len(items)}."}
        )
    targets = []
    for number, item in enumerate(items, start=1):
        try:
            target = TakeProfitTarget.parse(item)
        except (ValueError, TypeError) as error:
            raise ValidationError({"tp_targets": f"Target {number}: {error}"}) from None
        if -target.value.as_tuple().exponent > 4 or target.value >= 10**8:
            raise ValidationError(
                {"tp_targets": f"Target {number}: a distance has at most 8 digits and 4 decimal places."}
            )
        targets.append(target)
    return targets


def target_rows(model: type, parent: dict, targets: Sequence[TakeProfitTarget]) -> list:
    return [
        model(number=number, value=target.value, trim=target.trim, **parent)
        for number, target in enumerate(targets, start=1)
    ]


def target_items(targets: Sequence[TakeProfitTarget]) -> list[dict]:
    return [{"value": target.value, "trim": target.trim} for target in targets]


def time_filter_errors(values: Mapping[str, Any], errors: dict[str, list], *, label: str = "") -> None:
    """Check that each time filter that is on has a start and a different stop (on the effective values)."""
    for number in (1, 2):
        prefix = f"time_filter_{number}"
        if not values.get(f"{prefix}_enabled"):
            continue
        start, stop = values.get(f"{prefix}_start"), values.get(f"{prefix}_stop")
        if start is None:
            error_add(errors, f"{prefix}_start", f"Time filter {number} is on: give it a start time{label}.")
        if stop is None:
            error_add(errors, f"{prefix}_stop", f"Time filter {number} is on: give it a stop time{label}.")
        if start is not None and start == stop:
            error_add(
                errors,
                f"{prefix}_stop",
                f"Time filter {number} starts and stops at the same time: make them differ, or turn it off.",
            )


def timezone_errors(name: str | None, errors: dict[str, list]) -> None:
    if not name:
        return
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        error_add(errors, "timezone", f"Unknown time zone {name!r}: use a name such as America/Chicago.")


def settings_errors(risk: dict, plan: dict, errors: dict[str, list]) -> None:
    """Build the pure settings once, so nothing saved can later fail inside the risk engine or the plans."""
    for build in (lambda: RiskSettings.from_fields(risk), lambda: PlanSettings.from_fields(plan)):
        try:
            build()
        except (ValueError, TypeError) as error:
            error_add(errors, NON_FIELD_ERRORS, str(error))


def full_clean_errors(instance: Any, errors: dict[str, list]) -> None:
    """Add the model's field errors, then its constraints' unless a field check explained the problem."""
    try:
        instance.full_clean(validate_constraints=False)
    except ValidationError as error:
        errors_merge(errors, error)
    if not errors:
        try:
            instance.validate_constraints()
        except ValidationError as error:
            errors_merge(errors, error)


def errors_raise(errors: dict[str, list]) -> None:
    if errors:
        raise ValidationError(errors)


@contextmanager
def restored_on_error(instance: Any, names: Iterable[str]) -> Iterator[None]:
    """Put the named attributes back if the block fails: a refused change leaves the object as it was."""
    saved = {name: getattr(instance, name) for name in names}
    try:
        yield
    except (ValidationError, IntegrityError):
        for name, value in saved.items():
            setattr(instance, name, value)
        raise


def save_unique(instance, errors_if_duplicate: dict[str, str], save) -> None:
    """Run `save`; a unique constraint lost to a concurrent request becomes a ValidationError."""
    try:
        with transaction.atomic():
            save()
    except IntegrityError:
        try:
            instance.validate_constraints()
        except ValidationError:
            raise ValidationError(errors_if_duplicate) from None
        raise
