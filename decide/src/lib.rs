//! The pure pieces of deciding what to do to a call, shared by the shim
//! (`LD_PRELOAD`, inside other people's processes) and the `delayshim`
//! command's seccomp backend (which decides for programs the shim cannot
//! enter): hashing for seeds and call sites, drawing a delay, matching
//! paths, and errno names. One definition each, so a seed means the same
//! under either backend. Nothing here allocates, locks or makes a system
//! call: the shim calls it from signal handlers.

pub mod errnos;
pub mod glob;
pub mod hash;
pub mod sampler;
