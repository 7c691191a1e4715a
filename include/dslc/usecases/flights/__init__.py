"""NYC flights 2013: the default use case."""
