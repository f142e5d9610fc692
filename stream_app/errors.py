"""The one error tree of stream-app.

Every error the project raises on purpose derives from ``StreamAppError``; the command line
prints its message (no traceback) and exits non-zero.
"""

from __future__ import annotations


class StreamAppError(Exception):
    """Root of every stream-app error."""


class ConfigurationError(StreamAppError):
    """The settings or a file they point at cannot be used."""


class ServiceError(StreamAppError):
    """A local service (Kafka or Cassandra) could not be fetched, started or stopped."""


class ServiceNotReady(ServiceError):
    """A local service did not become ready in time; the message carries its log's tail."""


class SchemaMigrationError(StreamAppError):
    """A CQL schema file could not be applied."""


class TopicSetupError(StreamAppError):
    """A Kafka topic could not be created or does not match what the design needs."""
