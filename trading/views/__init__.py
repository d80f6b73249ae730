"""Pages of the trading domain, one module per area; trading/urls.py imports the modules."""
