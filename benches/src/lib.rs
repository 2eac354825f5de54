//! Shared workload builders of the benchmarks.
