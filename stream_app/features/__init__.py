"""The feature store: windowed aggregates of sensor readings, batch features, lookups."""
