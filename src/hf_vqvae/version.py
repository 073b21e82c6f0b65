"""The package's version, in a module of its own so that what every saved config records (`configuration_utils`)
reads it without importing the package's public API."""

__version__ = "0.2.0"
