//! easel: a terminal studio for live-coding generative art.
//!
//! Data flows one way: file → [`spec::load`] → [`spec::Spec`] → renderer
//! ([`truchet`]) → image (with its [`recipe`]) → CLI or studio.

pub mod alloc;
pub mod cli;
pub mod cppn;
pub mod device;
pub mod gan;
pub mod noise;
pub mod ranks;
pub mod recipe;
pub mod run;
pub mod sketch;
pub mod spec;
pub mod studio;
pub mod truchet;
pub mod upscale;
