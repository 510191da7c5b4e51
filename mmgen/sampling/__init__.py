"""mmgen.sampling."""
