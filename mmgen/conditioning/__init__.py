"""mmgen.conditioning."""
