//! Pair harness and scenario tests.
