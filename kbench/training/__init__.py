"""Training one grid point: compile from names, fit with Keras callbacks, test."""
