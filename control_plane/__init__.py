"""The control plane: instrument registry, topic provisioning, live subscriptions (not built yet)."""
