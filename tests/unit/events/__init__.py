"""Unit tests of connector.events."""
