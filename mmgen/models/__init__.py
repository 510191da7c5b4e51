"""Models that consume tokens or pixels: masked-token transformers, MIM encoders, classifiers."""
