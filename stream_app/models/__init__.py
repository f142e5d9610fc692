"""Models: the Scorer interface, the LightGBM scorer and the registry of versions."""
