"""Contract roots known to the pipeline, cached per process."""

from __future__ import annotations

import time

from trading.models import (
    ContractSpec,
)
from trading.symbols import CONTRACTS, symbol_root

ROOTS_CACHE_SECONDS = 300.0


_roots_cache: tuple[float, frozenset[str]] | None = None


def contract_roots() -> frozenset[str]:
    """Return every known contract root; cached for a few minutes, as ContractSpec rarely changes."""
    global _roots_cache
    now = time.monotonic()
    if _roots_cache is None or now - _roots_cache[0] > ROOTS_CACHE_SECONDS:
        roots = frozenset(ContractSpec.objects.values_list("root", flat=True)) | frozenset(CONTRACTS)
        _roots_cache = (now, roots)
    return _roots_cache[1]


def contract_root(symbol: str) -> str:
    """Return the contract root of a symbol (`CME_MINI:ES1!` -> `ES`); SymbolError when no contract has it."""
    return symbol_root(symbol, contract_roots())
