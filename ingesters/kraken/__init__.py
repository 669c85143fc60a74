"""Kraken WebSocket v2: wire schemas, parser, order book with CRC32 checksum, the ingester service."""
