"""Cassandra tables of predictions (with served features) and ground truth."""
