"""The data plane's landing side: the landing contract, the synthetic generator, public-data converters."""
