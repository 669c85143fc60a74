"""What every venue parser shares: the venue's name → canonical symbol cache (bounded) and the per-symbol,
per-channel sequence numbers Pulse gives its events.

A venue's parser mixes in :class:`SymbolParser`, sets ``message_error`` (the error a bad message raises) and
``_resolve`` (the venue's name → canonical symbol), and starts ``_symbols`` and ``_seq`` empty.
"""

from __future__ import annotations

from collections.abc import Callable

from pulse.errors import PulseError, SymbolError

__all__ = ["SymbolParser"]

_CACHE_MAX = 10_000  # names cached before the cache starts over


class SymbolParser:
    message_error: type[PulseError]  # raised for a name that is no symbol
    _resolve: Callable[[str], str]  # the venue's name → canonical symbol (raises SymbolError)
    _symbols: dict[str, str]  # venue name → canonical symbol
    _seq: dict[tuple[str, str], int]  # (symbol, channel) → last sequence number given

    def _canonical(self, name: str) -> str:
        sym = self._symbols.get(name)
        if sym is None:
            try:
                sym = self._resolve(name)
            except SymbolError as exc:
                raise self.message_error(str(exc)) from exc
            if len(self._symbols) >= _CACHE_MAX:
                self._symbols.clear()
            self._symbols[name] = sym
        return sym

    def _next_seq(self, symbol: str, channel: str) -> int:
        key = (symbol, channel)
        n = self._seq.get(key, 0) + 1
        self._seq[key] = n
        return n
