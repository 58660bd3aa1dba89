"""Real local stand-ins for the services the connector talks to: an Apache Kafka broker, the Inkit
API and a Confluent-compatible Schema Registry. Used by the tests, `make demo` and the benchmarks;
never imported by the connector's runtime path."""
