//! Killing the real binary mid-ingest.
