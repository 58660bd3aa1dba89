"""Unit tests of connector.delivery."""
