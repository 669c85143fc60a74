"""Binance spot market data (combined WebSocket streams + REST depth snapshots)."""
