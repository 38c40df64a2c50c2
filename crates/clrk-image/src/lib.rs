//! clrk-image
