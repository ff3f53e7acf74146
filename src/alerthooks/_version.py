"""The package version, in a module of its own so that modules below the facade can read it
without importing the package root (which imports the facade)."""

__version__ = "0.1.0"
