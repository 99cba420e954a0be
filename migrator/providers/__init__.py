"""Provider plug-ins. The engine asks :mod:`migrator.providers.registry`, never a provider by name."""
