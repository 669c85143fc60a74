"""Alpaca market data v2 stream (US equities): trades, quotes and minute bars into the ``equities`` namespace."""
