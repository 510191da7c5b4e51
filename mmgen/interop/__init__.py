"""mmgen.interop."""
