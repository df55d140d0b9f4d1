//! Ferry: direct-to-bucket file uploads.
//!
//! A browser asks Ferry for a presigned URL, PUTs the bytes straight to the bucket, and asks
//! Ferry to record the upload; Ferry checks the object really exists before it writes a row.
//!
//! - [`api`]: the HTTP edge (the guide's endpoints, files, health)
//! - [`auth`]: who is calling
//! - [`upload`]: keys, upload tickets, upload rules
//! - [`storage`]: the S3 client behind a small trait
//! - [`embedded`]: the S3-compatible store Ferry runs when no bucket is configured
//! - [`db`]: metadata in SQLite or Postgres
//! - [`sweep`]: cleanup of abandoned uploads and half-done deletes
//! - [`startup`]: building and serving all of it

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod db;
pub mod embedded;
pub mod startup;
pub mod storage;
pub mod sweep;
pub mod upload;
pub mod webhook;
