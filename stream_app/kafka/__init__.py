"""All of stream-app's Kafka plumbing: batch consumers (consumer.py), the producer of outputs
(producer.py) and the admin client (admin.py), each with explicit parameters."""
