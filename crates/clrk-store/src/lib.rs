//! clrk-store
