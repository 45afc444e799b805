"""Notifications: the transports that deliver events to webhooks, mail servers, pings, ntfy, commands
and apprise (`transports`), built from [[notifiers]] by `registry.transport_for`."""
