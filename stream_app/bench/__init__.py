"""`stream-app bench ...`: benchmarks that print JSON, always against a baseline of the same run."""
