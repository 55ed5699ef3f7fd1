//! placeholder: owned by the web work in progress.
