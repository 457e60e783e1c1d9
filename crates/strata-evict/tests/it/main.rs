//! Integration tests of strata-evict: every policy against the `Policy` contract, and OPT
//! against brute force.

mod conformance;
mod opt;
mod sieve_ref;
