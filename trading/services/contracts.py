"""Contract roots known to the pipeline, from the per-process copy of the contract specifications."""

from __future__ import annotations

from trading.selectors import contract_specs
from trading.symbols import CONTRACTS, symbol_root


def contract_roots() -> frozenset[str]:
    """Return every known contract root (the specifications' copy is dropped when one changes)."""
    return frozenset(contract_specs()) | frozenset(CONTRACTS)


def contract_root(symbol: str) -> str:
    """Return the contract root of a symbol (`CME_MINI:ES1!` -> `ES`); SymbolError when no contract has it."""
    return symbol_root(symbol, contract_roots())
