"""Local stand-ins for the provider APIs: faithful protocol, persistent state, injectable faults."""
