"""Metrics (their names are public API), health endpoints, logging configuration."""
