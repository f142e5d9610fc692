"""One use case's view of the deployment: its own topics and consumer groups.

Several use cases share one Kafka and one Cassandra. Each use case's topic names are the
configured names (``kafka.topics``) behind its prefix (``topic_prefix`` in its spec; by default
``<name>.``), its consumer groups carry the same prefix, and every table row carries its name,
so nothing of one use case reaches another. The shipped ``delivery_eta`` uses the plain names.
"""

from __future__ import annotations

from stream_app.settings import Settings, TopicNames
from stream_app.use_cases.spec import UseCase, load_use_case


def prefixed(prefix: str, name: str) -> str:
    """``name`` behind ``prefix``; a name that already carries it is kept as it is."""
    return name if name.startswith(prefix) else prefix + name


def topic_names(settings: Settings, use_case: UseCase) -> TopicNames:
    """The topics of ``use_case``: the configured names behind its prefix."""
    names = settings.kafka.topics.model_dump()
    return TopicNames(**{k: prefixed(use_case.prefix, v) for k, v in names.items()})


def for_use_case(
    settings: Settings, use_case: UseCase, name_or_path: str | None = None
) -> Settings:
    """``settings`` as the deployment of ``use_case`` sees them: its topic names, and the use
    case itself (``name_or_path``, as given) for the processes it starts."""
    kafka = settings.kafka.model_copy(update={"topics": topic_names(settings, use_case)})
    update = {"kafka": kafka, "use_case": name_or_path or settings.use_case}
    return settings.model_copy(update=update)


def group_id(settings: Settings, use_case: UseCase, agent: str) -> str:
    """The consumer group of one agent of ``use_case`` (``<app id>-<prefix><agent>``)."""
    return f"{settings.worker.app_id}-{use_case.prefix}{agent}"


def load(name_or_path: str | None, settings: Settings) -> tuple[UseCase, Settings]:
    """The use case (default: the settings' own) and the settings as it sees them."""
    use_case = load_use_case(name_or_path or settings.use_case)
    return use_case, for_use_case(settings, use_case, name_or_path)
