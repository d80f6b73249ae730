"""Create one-time access keys and print them (or write them to a CSV file) once."""

from __future__ import annotations

import csv
import os
from datetime import datetime, time
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from accounts import services
from accounts.services import IssuedAccessKey
from pineaccess.models import PineScript

CSV_HEADER = ["id", "key", "note", "scripts", "days", "auto_approve", "valid_until"]


class Command(BaseCommand):
    help = (
        "Create one-time access keys; they are shown once (here or in the CSV file) and stored only hashed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, required=True, help="How many keys to create.")
        parser.add_argument(
            "--scripts",
            default="",
            help="Comma-separated script ids (PUB;...) the keys grant; default: DEFAULT_PINE_IDS.",
        )
        parser.add_argument(
            "--days", type=int, default=None, help="Access duration in days; default lifetime."
        )
        parser.add_argument("--note", default="", help="A note for staff, such as who the keys are for.")
        parser.add_argument(
            "--no-auto-approve",
            dest="auto_approve",
            action="store_false",
            help="Accounts registered with these keys wait for staff approval.",
        )
        parser.add_argument(
            "--valid-until", default=None, help="Date or date-time after which the keys cannot be redeemed."
        )
        parser.add_argument(
            "--csv",
            dest="csv_path",
            default=None,
            help="Write the keys to this new file (readable by its owner only) instead of printing them.",
        )

    def handle(self, *args, **options) -> None:
        scripts = self._scripts(options["scripts"])
        valid_until = self._valid_until(options["valid_until"])
        csv_path = Path(options["csv_path"]) if options["csv_path"] else None
        handle = self._open_csv(csv_path) if csv_path else None
        try:
            with transaction.atomic():
                issued = services.access_keys_create(
                    count=options["count"],
                    scripts=scripts,
                    access_days=options["days"],
                    note=options["note"],
                    auto_approve=options["auto_approve"],
                    valid_until=valid_until,
                )
                if handle is not None:
                    # Written inside the transaction: if the file cannot be written, no key is kept.
                    self._write_csv(handle, issued, scripts)
        except ValidationError as error:
            self._discard(handle, csv_path)
            raise CommandError(" ".join(error.messages)) from error
        except BaseException:
            self._discard(handle, csv_path)
            raise

        if handle is None:
            for item in issued:
                self.stdout.write(item.raw_key)
        granted = ", ".join(script.pine_id for script in scripts) or "the default scripts (DEFAULT_PINE_IDS)"
        duration = f"{options['days']} days" if options["days"] else "lifetime"
        approval = "auto-approve" if options["auto_approve"] else "staff approval"
        where = f"written to {csv_path}" if csv_path else "shown above, and never again"
        self.stdout.write(
            self.style.SUCCESS(
                f"Created {len(issued)} access key{'s' if len(issued) != 1 else ''} "
                f"(ids {issued[0].access_key.pk}-{issued[-1].access_key.pk}) granting {granted}, {duration}, "
                f"{approval}; {where}."
            )
        )

    def _scripts(self, value: str) -> list[PineScript]:
        wanted = list(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
        found = {script.pine_id: script for script in PineScript.objects.filter(pine_id__in=wanted)}
        unknown = [pine_id for pine_id in wanted if pine_id not in found]
        if unknown:
            raise CommandError(
                f"Unknown script id{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}. Use the ids of "
                "scripts in the catalogue (PUB; followed by 32 hex characters); add new scripts in the admin "
                "first."
            )
        return [found[pine_id] for pine_id in wanted]

    def _valid_until(self, value: str | None) -> datetime | None:
        if not value:
            return None
        moment = parse_datetime(value)
        if moment is None:
            day = parse_date(value)
            if day is None:
                raise CommandError(
                    f'--valid-until "{value}" is not a date; write it as 2026-12-31 or 2026-12-31T18:00.'
                )
            # A date means the whole of that day, in the server's time zone.
            moment = timezone.make_aware(datetime.combine(day, time.max))
        elif timezone.is_naive(moment):
            moment = timezone.make_aware(moment)
        return moment

    def _open_csv(self, path: Path):
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise CommandError(
                f"{path} already exists; choose a new file name so no earlier keys are overwritten."
            ) from None
        except OSError as error:
            raise CommandError(f"Cannot create {path}: {error.strerror}.") from None
        return os.fdopen(descriptor, "w", newline="", encoding="utf-8")

    def _write_csv(self, handle, issued: list[IssuedAccessKey], scripts: list[PineScript]) -> None:
        writer = csv.writer(handle)
        writer.writerow(CSV_HEADER)
        pine_ids = " ".join(script.pine_id for script in scripts)
        for item in issued:
            key = item.access_key
            writer.writerow(
                [
                    key.pk,
                    item.raw_key,
                    key.note,
                    pine_ids,
                    key.access_days or "",
                    "yes" if key.auto_approve else "no",
                    key.valid_until.isoformat() if key.valid_until else "",
                ]
            )
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()

    def _discard(self, handle, path: Path | None) -> None:
        if handle is None or path is None:
            return
        handle.close()
        path.unlink(missing_ok=True)
