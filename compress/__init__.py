"""edgefuse compression: prune -> distill -> quantize -> export -> verify -> bundle (needs the `[compress]` extra)."""

__all__: list[str] = []
