"""The scoring path: client events -> features -> model -> predictions (agents call this)."""
