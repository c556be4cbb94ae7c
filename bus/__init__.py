"""B-OTC transport: NATS connections, subjects, signed and sealed envelopes, the embedded server."""
