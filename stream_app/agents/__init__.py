"""Faust agents: each module has register(app, topics, deps) and stays thin."""
