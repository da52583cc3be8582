"""Dataset discovery, patient-grouped splits, decoding, transforms and the in-memory cache."""
