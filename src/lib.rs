//! easel: a terminal studio for live-coding generative art.
//!
//! Data flows one way: file → [`sketch::load`] → [`sketch::Spec`] → renderer
//! ([`truchet`]) → image (with its [`recipe`]) → CLI or studio.

pub mod alloc;
pub mod cli;
pub mod cppn;
pub mod device;
pub mod gan;
pub mod recipe;
pub mod run;
pub mod sketch;
pub mod studio;
pub mod truchet;
