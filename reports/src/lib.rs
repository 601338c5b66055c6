//! Rendering result files for people: the `run` summary table (and, as
//! the project grows, the mailing-list report, plots and comparisons).

#![warn(missing_docs)]

pub mod compare;
pub mod figures;
pub mod history;
pub mod html;
pub mod plots;
pub mod robot;
pub mod schema;
pub mod stats;
pub mod summary;
pub mod timeline;
pub mod verdicts;
