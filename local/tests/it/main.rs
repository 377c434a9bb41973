//! The local server's black-box tests in one binary: the real `etp-local` on free ports. The
//! hostile suite (`tests/hostile.rs`) is its own binary: it runs its cases in order against one
//! server and prints a summary.

mod blackbox;
mod metrics;
