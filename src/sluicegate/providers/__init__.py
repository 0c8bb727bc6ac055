"""Provider adapters: one folder (or module) per provider, discovered by the registry."""
