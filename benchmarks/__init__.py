"""edgefuse benchmarks: MLPerf-style scenarios over the runtime."""

__all__: list[str] = []
