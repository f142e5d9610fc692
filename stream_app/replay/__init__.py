"""Replaying a time range of a topic for on-call engineers (planning first)."""
