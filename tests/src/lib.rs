//! Harness for tests that run against a real management cluster.
