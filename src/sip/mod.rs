//! placeholder: owned by the sip work in progress.
