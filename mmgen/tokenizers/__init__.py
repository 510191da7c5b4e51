"""mmgen.tokenizers."""
