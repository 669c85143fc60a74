"""OANDA v20 pricing-stream wire formats, as frozen msgspec structs with OANDA's own field names.

Source: OANDA v20 REST "Pricing" endpoints and definitions (``GET /v3/accounts/{accountID}/pricing/stream``;
``ClientPrice``, ``PriceBucket``, ``PricingHeartbeat``; github.com/oanda/v20-openapi ``v20_pricing.yaml``).
The stream body is chunked newline-delimited JSON: each line is one ``PRICE`` or ``HEARTBEAT`` object,
heartbeats every 5 seconds. Prices are decimal strings and decode straight into :class:`~decimal.Decimal`.

Fields OANDA may add later are ignored (no ``forbid_unknown_fields``): the stream must survive API additions.
Decoders are built once, here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import msgspec

PriceStatus = Literal["tradeable", "non-tradeable", "invalid"]


class PriceBucket(msgspec.Struct, frozen=True):
    """One rung of a ladder: a price available for an amount of liquidity."""

    price: Decimal  # the price offered, a decimal string; its precision depends on the instrument
    liquidity: int  # units of the base currency available at this price (integer per the spec)


class QuoteHomeConversionFactors(msgspec.Struct, frozen=True):
    """Deprecated by OANDA; decoded when present so it is not mistaken for damage."""

    positiveUnits: Decimal  # factor converting a positive quote-currency amount into the home currency
    negativeUnits: Decimal  # factor converting a negative quote-currency amount into the home currency


class ClientPrice(msgspec.Struct, frozen=True, tag_field="type", tag="PRICE"):
    """An account-specific price (``"type": "PRICE"``)."""

    instrument: str  # OANDA instrument name, e.g. "EUR_USD"
    time: str  # RFC 3339 creation time, "2016-10-27T08:38:43.094548890Z": up to 9 fractional digits
    bids: tuple[PriceBucket, ...] = ()  # bid ladder, best (highest) first; empty when no bid liquidity
    asks: tuple[PriceBucket, ...] = ()  # ask ladder, best (lowest) first; empty when no ask liquidity
    closeoutBid: Decimal | None = None  # bid used to close out a position when there is no bid liquidity
    closeoutAsk: Decimal | None = None  # ask used to close out a position when there is no ask liquidity
    status: PriceStatus | None = None  # deprecated by OANDA in favour of `tradeable`
    tradeable: bool | None = None  # False while the market is closed or the instrument is halted
    quoteHomeConversionFactors: QuoteHomeConversionFactors | None = None  # deprecated; not used by Pulse


class PricingHeartbeat(msgspec.Struct, frozen=True, tag_field="type", tag="HEARTBEAT"):
    """Sent every 5 seconds so the client can tell a quiet market from a dead connection."""

    time: str  # RFC 3339 time the heartbeat was created


class ErrorBody(msgspec.Struct, frozen=True):
    """The body of a non-2xx response, e.g. ``{"errorMessage": "Insufficient authorization ..."}``."""

    errorMessage: str = ""  # human-readable reason
    errorCode: str | int | None = None  # machine-readable code; OANDA documents it as optional


StreamMessage = ClientPrice | PricingHeartbeat

#: Decodes one stream line into a :class:`ClientPrice` or a :class:`PricingHeartbeat`.
STREAM_DECODER = msgspec.json.Decoder(StreamMessage)
#: Decodes an error response body.
ERROR_DECODER = msgspec.json.Decoder(ErrorBody)
#: Encodes wire structs (the simulator uses it); decimals stay strings, as OANDA sends them.
WIRE_ENCODER = msgspec.json.Encoder(decimal_format="string")
