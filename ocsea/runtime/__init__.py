"""The runtime every service shares: settings, broker, consumer, telemetry, HTTP, auth."""
