"""W3C trace context carried in Kafka headers, and OpenTelemetry spans (README "Tracing")."""
