"""Unit tests of connector.cli."""
