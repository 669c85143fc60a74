"""Deploying the Alpaca ingester under systemd: its declared secret settings (key, secret) become credentials of its
own drop-in, mapped to their ``*_file`` settings — derived from the venue registry, not listed by hand."""

from __future__ import annotations

from app.systemd import Layout, all_credentials, render_all, venue_credentials


def test_the_venues_secret_settings_become_its_drop_in_credentials() -> None:
    assert venue_credentials()["alpaca"] == {"alpaca-key": "PULSE_ALPACA__KEY_FILE",
                                             "alpaca-secret": "PULSE_ALPACA__SECRET_FILE"}  # fmt: skip
    assert venue_credentials()["oanda"] == {"oanda-token": "PULSE_OANDA__TOKEN_FILE"}  # as before
    assert {"alpaca-key", "alpaca-secret", "oanda-token", "database-url"} <= set(all_credentials())
    files = render_all(Layout(credentials=("database-url", "alpaca-key", "alpaca-secret")), ("alpaca", "kraken"))
    dropin = files["pulse-ingest@alpaca.service.d/credentials.conf"]
    assert "LoadCredential=alpaca-secret:/etc/pulse/credentials/alpaca-secret" in dropin
    assert "Environment=PULSE_ALPACA__SECRET_FILE=%d/alpaca-secret" in dropin
    assert "Environment=PULSE_ALPACA__KEY_FILE=%d/alpaca-key" in dropin
    assert "alpaca" not in files["pulse-ingest@.service"]  # only the alpaca instance gets Alpaca's secrets
    assert not any(k.startswith("pulse-ingest@kraken") for k in files)  # Kraken declares no secret
