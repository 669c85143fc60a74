"""Application wiring above every service package: ``pulse demo`` (:mod:`app.demo`) and ``pulse status``
(:mod:`app.health`). It may import any package; nothing imports it but ``cli.py``."""
