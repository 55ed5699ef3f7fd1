//! The `holdline` binary (placeholder until the composition root lands).
fn main() {}
