"""Checks on what goes to a provider and what comes back: PII, secrets, injection, policy."""
