//! Test support for delayshim: the probe programs in `src/bin` and the
//! integration tests in `tests/`.
