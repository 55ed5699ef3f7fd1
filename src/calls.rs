//! Call control (placeholder).
