//! Handlers, one module per area.

pub mod admin;
pub mod batches;
pub mod docs;
pub mod events;
pub mod files;
pub mod health;
pub mod jobs;
pub mod objects;
pub mod tenants;
pub mod uploads;
pub mod webhooks;
