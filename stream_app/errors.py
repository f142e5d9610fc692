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


class InvalidEvent(StreamAppError):
    """A message that cannot be accepted; it goes to the dead-letter topic with its code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class UseCaseError(ConfigurationError):
    """A use-case spec file is missing or invalid; the message says where and why."""


class NoSimulation(UseCaseError):
    """A command needs the use case's ``[simulation]`` world, and the spec has none.

    Not a failure of the command but of the request: the command line exits with 2."""

    exit_code = 2

    def __init__(self, use_case: str, spec: str, wanted: str) -> None:
        super().__init__(
            f"use case {use_case} has no [simulation] section, so there is no world to "
            f"{wanted}. Bring its data instead: `stream-app history import EVENTS.csv "
            f"--use-case {spec}` and then `stream-app train --use-case {spec} --since ...`, or a "
            f"model trained elsewhere: `stream-app models import MODEL.txt --use-case {spec}`"
        )


class ExpressionError(UseCaseError):
    """A simulation expression in a use-case spec cannot be parsed or uses unknown names."""


class StoreError(StreamAppError):
    """Cassandra refused or did not answer; ``retryable`` says whether to back off and retry."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class FeatureLookupError(StoreError):
    """Stored features could not be read (timeout, node down)."""


class ModelNotFound(StreamAppError):
    """No model version (or no model in a role) where one is needed."""


class TrainingError(StreamAppError):
    """A model cannot be trained (e.g. too few labelled rows in the window)."""


class BenchError(StreamAppError):
    """A benchmark could not run: a process it started failed or never answered (the message
    names its log)."""
