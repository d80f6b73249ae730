"""Contract specifications: the tick arithmetic every price and dollar amount depends on."""

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from trading.symbols import ContractInfo

ROOT_PATTERN = r"^[A-Z0-9]*[A-Z][A-Z0-9]*$"
MONTHS_PATTERN = r"^[FGHJKMNQUVXZ]+$"


class ContractSpec(models.Model):
    """One futures root (ES, NQ, CL ...) with its tick size, tick value and point value."""

    root = models.CharField(
        max_length=10,
        unique=True,
        validators=[
            RegexValidator(ROOT_PATTERN, "A root is upper-case letters and digits, such as ES or M2K.")
        ],
    )
    name = models.CharField(max_length=100)
    exchange = models.CharField(max_length=20, blank=True)
    tick_size = models.DecimalField(
        max_digits=12, decimal_places=6, help_text="Smallest price step, in points."
    )
    tick_value = models.DecimalField(
        max_digits=12, decimal_places=4, help_text="Dollars per tick per contract."
    )
    point_value = models.DecimalField(
        max_digits=14, decimal_places=4, help_text="Dollars per point per contract."
    )
    months = models.CharField(
        max_length=12,
        validators=[RegexValidator(MONTHS_PATTERN, "Months are futures month codes, such as HMUZ.")],
        help_text="Month codes the contract is listed in (F G H J K M N Q U V X Z).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["root"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(root__regex=ROOT_PATTERN), name="trading_contract_root_format"
            ),
            models.CheckConstraint(
                condition=models.Q(months__regex=MONTHS_PATTERN), name="trading_contract_months_format"
            ),
            models.CheckConstraint(
                condition=models.Q(tick_size__gt=0), name="trading_contract_tick_size_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(tick_value__gt=0), name="trading_contract_tick_value_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(point_value__gt=0), name="trading_contract_point_value_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.root} ({self.name})"

    def clean(self) -> None:
        # Checked here, not in the database: SQLite multiplies decimals as floats (0.1 x 50 != 5).
        if self.tick_size and self.point_value and self.tick_value:
            expected = Decimal(self.tick_size) * Decimal(self.point_value)
            if expected != Decimal(self.tick_value):
                raise ValidationError(
                    {
                        "tick_value": f"The tick value must be tick size x point value "
                        f"({self.tick_size} x {self.point_value} = {expected.normalize()})."
                    }
                )

    def as_contract_info(self) -> ContractInfo:
        """Return the pure value the risk engine and order plans work with."""
        return ContractInfo(
            root=self.root,
            tick_size=self.tick_size,
            tick_value=self.tick_value,
            point_value=self.point_value,
            months=self.months,
            name=self.name,
            exchange=self.exchange,
        )
