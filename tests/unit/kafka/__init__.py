"""Unit tests of connector/kafka."""
