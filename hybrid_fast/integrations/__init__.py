"""Integrations with other training libraries (each module imports its library on import):
:mod:`hybrid_fast.integrations.sentence_transformers`."""
