"""Load the contract table of shared/specs/tradovate.md; rows an operator already edited are left alone."""

from decimal import Decimal

from django.db import migrations

# Frozen here on purpose: a migration must keep producing the same rows whatever later code says.
CONTRACTS = [
    # root, name, exchange, tick size, tick value, point value, months
    ("ES", "E-mini S&P 500", "CME", "0.25", "12.50", "50", "HMUZ"),
    ("MES", "Micro E-mini S&P 500", "CME", "0.25", "1.25", "5", "HMUZ"),
    ("NQ", "E-mini Nasdaq-100", "CME", "0.25", "5.00", "20", "HMUZ"),
    ("MNQ", "Micro E-mini Nasdaq-100", "CME", "0.25", "0.50", "2", "HMUZ"),
    ("YM", "E-mini Dow", "CBOT", "1.00", "5.00", "5", "HMUZ"),
    ("MYM", "Micro E-mini Dow", "CBOT", "1.00", "0.50", "0.50", "HMUZ"),
    ("RTY", "E-mini Russell 2000", "CME", "0.10", "5.00", "50", "HMUZ"),
    ("M2K", "Micro E-mini Russell 2000", "CME", "0.10", "0.50", "5", "HMUZ"),
    ("CL", "Crude oil", "NYMEX", "0.01", "10.00", "1000", "FGHJKMNQUVXZ"),
    ("MCL", "Micro crude oil", "NYMEX", "0.01", "1.00", "100", "FGHJKMNQUVXZ"),
    ("GC", "Gold", "COMEX", "0.10", "10.00", "100", "GJMQVZ"),
    ("MGC", "Micro gold", "COMEX", "0.10", "1.00", "10", "GJMQVZ"),
]


def load_contracts(apps, schema_editor):
    contract_spec = apps.get_model("trading", "ContractSpec")
    for root, name, exchange, tick_size, tick_value, point_value, months in CONTRACTS:
        contract_spec.objects.get_or_create(
            root=root,
            defaults={
                "name": name,
                "exchange": exchange,
                "tick_size": Decimal(tick_size),
                "tick_value": Decimal(tick_value),
                "point_value": Decimal(point_value),
                "months": months,
            },
        )


def unload_contracts(apps, schema_editor):
    apps.get_model("trading", "ContractSpec").objects.filter(root__in=[row[0] for row in CONTRACTS]).delete()


class Migration(migrations.Migration):
    dependencies = [("trading", "0001_initial")]

    operations = [migrations.RunPython(load_contracts, unload_contracts)]
