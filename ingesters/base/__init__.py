"""Shared ingester machinery: lifecycle, backoff, reconnect loop, publishing, dead letters, status."""
