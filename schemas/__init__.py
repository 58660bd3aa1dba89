"""Avro schemas of the connector, shipped inside the package as ``connector.schemas``."""
