"""Training machinery shared by the phases: optimizer, pure step functions, the loop."""
