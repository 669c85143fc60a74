"""OANDA v20 pricing stream: wire schemas, symbol mapping, the pure parser, market hours and the transport.

Modules: ``schemas`` (wire structs), ``symbols`` (``EUR_USD`` ↔ ``EUR/USD``), ``parser`` (lines → quotes),
``hours`` (FX trading hours), ``stream`` (the aiohttp client). Import from those; this file stays empty so
importing the pure parts does not pull in aiohttp.
"""
