"""Writes of the trading domain, one module per stage of the pipeline; callers import the modules.

Each line below imports only from the lines under it (never from this package itself, never sideways within
a line), so the stages depend one way and without cycles; `trading/tests/test_layout.py` holds us to it:

    demo, sweep, reconciliation
    signals
    fanout
    execution
    prices
    sync
    orders
    decisions, broker_accounts, recorders, traders
    queue, contracts, killswitches, validation

The path of one alert through them is in `trading/README.md`.
"""
