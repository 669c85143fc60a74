"""Venue ingesters. Each venue package normalises its wire format into pulse.models events."""
