//! The cluster link between placement and workers: how an execution order and its events
//! travel (`frames`), the worker's routes (`serve`) and placement's client (`remote`), over
//! `clrk-link`'s authenticated HTTP/2.

pub mod frames;
pub mod remote;
pub mod serve;
