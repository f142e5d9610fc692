"""`stream-app init`: the Kafka topics and the Cassandra keyspace the design needs."""
