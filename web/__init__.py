"""The Pulse console: WebSocket fan-out gateway, HTTP API and web page (`pulse web`)."""
