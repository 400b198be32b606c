//! Handlers, one module per area.

pub mod admin;
pub mod docs;
pub mod files;
pub mod health;
pub mod jobs;
pub mod objects;
pub mod uploads;
