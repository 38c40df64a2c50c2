//! clrk-server
