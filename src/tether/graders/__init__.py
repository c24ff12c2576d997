"""Graders: versioned components that score LLM interactions (deterministic checks, the embedded MiniLM grader,
a trainable head, an LLM judge). Used by the live evaluation loop and by the gate; they route nothing and
decide nothing: the monitor's tests decide on their scores."""
