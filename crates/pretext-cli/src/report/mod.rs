//! The comparison study's report: a Markdown summary and an SVG plot.

pub mod markdown;
pub mod plots;
