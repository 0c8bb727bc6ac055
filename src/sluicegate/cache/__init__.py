"""Answers the gateway has seen before: exact and semantic caches, and idempotent replay."""
