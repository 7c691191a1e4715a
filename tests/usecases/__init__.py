"""Use cases defined only in the tests: they prove the stages know no use case."""
