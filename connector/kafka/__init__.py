"""Kafka clients beyond the source consumer's loop: client construction, the dead-letter topic
and its recovery scan."""
