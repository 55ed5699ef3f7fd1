//! placeholder: owned by the media work in progress.
