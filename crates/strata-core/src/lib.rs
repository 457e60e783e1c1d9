//! Strata core (work in progress).
