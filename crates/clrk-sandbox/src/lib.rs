//! clrk-sandbox
