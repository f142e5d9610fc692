"""The local Kafka broker and Cassandra node that `stream-app services` runs."""
