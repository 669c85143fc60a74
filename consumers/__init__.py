"""Consumers of the live ticks: the matching core and the alerting core (not built yet)."""
