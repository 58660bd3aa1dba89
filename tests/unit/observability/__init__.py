"""Unit tests of connector.observability."""
