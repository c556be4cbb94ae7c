"""pytest fixtures for testing peers against a real nats-server (entry point ``pytest11``)."""
