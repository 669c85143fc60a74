"""Sinks: topics into PostgreSQL / TimescaleDB."""
