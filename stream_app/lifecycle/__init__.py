"""The model lifecycle inside the worker: following the roles (watcher, hot swap), the
deployment's rolling accuracy (accuracy feed), and the orchestrator that retrains and promotes.
The offline side (registry, training, evaluation, role changes) is in ``stream_app.models``."""
