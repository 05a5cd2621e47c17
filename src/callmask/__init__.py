"""callmask: a self-hosted number-masking voice platform."""
