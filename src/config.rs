//! Typed configuration (placeholder).
