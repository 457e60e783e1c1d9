//! Shared workloads for the side-by-side benches.
