"""Unit tests of connector.inkit."""
