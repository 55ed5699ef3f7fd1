//! Composition root (placeholder until the front-end lands).
