"""Coinbase Advanced Trade WebSocket market data (see README "Venues")."""
