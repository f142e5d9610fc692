"""Monitoring: Prometheus metrics and the pages the worker serves."""
