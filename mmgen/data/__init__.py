"""mmgen.data."""
