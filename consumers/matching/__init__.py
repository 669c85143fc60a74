"""Paper trading: a pure price-time-priority matching engine fed by live market data, and its Pulsar service.

``messages`` (commands in, executions out), ``book`` (one instrument's resting orders), ``positions``
(FIFO lots, exact PnL), ``engine`` (the deterministic state machine), ``journal`` (write-ahead log +
snapshots), ``service`` (Pulsar wiring), ``commands`` (click commands).
"""
