//! clrk-api
