"""inkit-connector: Segment Identify events in Kafka, delivered to Inkit."""

__version__ = "0.1.0"
