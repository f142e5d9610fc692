"""stream-app: Kafka-driven streaming inference with real-time features in Cassandra."""

__version__ = "0.1.0"
