"""Use cases: the declarative spec files and their loader."""
