"""sjjax: Self-Judge (Lee et al., ACL 2024) in JAX/Flax."""

__version__ = "0.1.0"
