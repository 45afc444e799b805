"""Notifications: the transports that deliver events to webhooks, mail servers, pings, ntfy, commands,
the daemon's own log and apprise (one module each), built from [[notifiers]] by `registry.transport_for`."""
