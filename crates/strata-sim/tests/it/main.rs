//! Integration tests of strata-sim: compressed readers, synthetic replays against OPT, and
//! the shared traces' published counts and LRU / OPT figures.

mod files;
mod shared_traces;
mod synthetic;
