"""mmgen.nn."""
