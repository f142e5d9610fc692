"""Event contracts: the payload of every topic, decoded and validated on the hot path.

The JSON Schemas in ``schemas/`` are the documentation for producers and consumers; the
validators here are hand-written for speed and tested against those schemas.
"""
