"""Dockyard: a container engine that speaks Docker's API."""

__version__ = "0.1.0"
