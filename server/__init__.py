"""SFX Studio proxy server: accounts, credits, key bank, generation, billing and updates."""

__version__ = "0.1.0"
