"""The HTTP face of the gateway: a plain ASGI application, no framework in the hot path."""
