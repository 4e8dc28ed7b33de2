"""Hand-written kernels XLA calls through its FFI (CPU decode products: `cpu_matvec`)."""
