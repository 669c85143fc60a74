"""Pulse core: event model, codec, topic naming, settings, Pulsar client wrapper, embedded runtime."""
