"""Re-encrypt every stored secret with the first key of FIELD_ENCRYPTION_KEYS."""

from django.core.management.base import BaseCommand
from django.db import connection, transaction

from justtrades.encryption import encrypted_fields, rotate_text


class Command(BaseCommand):
    help = "Re-encrypt every stored secret with the first key in FIELD_ENCRYPTION_KEYS."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Count what would change; write nothing.")

    def handle(self, *args, dry_run: bool = False, **options):
        rotated = 0
        for model, names in encrypted_fields():
            table = connection.ops.quote_name(model._meta.db_table)
            pk = model._meta.pk.column
            columns = [model._meta.get_field(name).column for name in names]
            # Raw SQL: the field would decrypt on read, and rotation works on the ciphertext.
            with transaction.atomic():
                with connection.cursor() as cursor:
                    quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
                    cursor.execute(f"SELECT {connection.ops.quote_name(pk)}, {quoted} FROM {table}")  # noqa: S608
                    rows = cursor.fetchall()
                for row in rows:
                    updates = {
                        column: rotate_text(value)
                        for column, value in zip(columns, row[1:], strict=True)
                        if value
                    }
                    if not updates:
                        continue
                    rotated += 1
                    if dry_run:
                        continue
                    assignments = ", ".join(f"{connection.ops.quote_name(c)} = %s" for c in updates)
                    with connection.cursor() as cursor:
                        cursor.execute(
                            f"UPDATE {table} SET {assignments} WHERE {connection.ops.quote_name(pk)} = %s",  # noqa: S608
                            [*updates.values(), row[0]],
                        )
        verb = "would re-encrypt" if dry_run else "re-encrypted"
        self.stdout.write(self.style.SUCCESS(f"rotate_encryption_keys: {verb} {rotated} row(s)."))
