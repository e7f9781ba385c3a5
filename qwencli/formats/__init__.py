"""File formats a model comes in, read without loading an engine."""
