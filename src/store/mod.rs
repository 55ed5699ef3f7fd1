//! placeholder: owned by the store work in progress.
