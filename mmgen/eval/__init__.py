"""mmgen.eval."""
