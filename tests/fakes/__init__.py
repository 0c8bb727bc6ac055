"""Fake providers that speak each provider's real wire format over real sockets, with fault injection."""
