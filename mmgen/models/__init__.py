"""mmgen.models."""
