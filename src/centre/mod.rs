//! placeholder: owned by the centre work in progress.
