//! clrk-dispatch
