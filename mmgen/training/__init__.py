"""mmgen.training."""
