//! Ferry: direct-to-bucket file uploads.
//!
//! A browser asks Ferry for a presigned URL, PUTs the bytes straight to the bucket, and asks
//! Ferry to record the upload; Ferry checks the object really exists before it writes a row.
//!
//! Layers, top to bottom (imports only point down):
//!
//! - [`cli`] → [`startup`] (HTTP on top of the core) → [`api`] (the HTTP edge: parse, call, answer)
//! - [`core`]: builds everything below from a [`config::Config`], without sockets
//! - domain: [`upload`] (the upload service), [`sweep`] (cleanup), [`webhook`] (B2 events)
//! - ports: [`db`] (metadata), [`storage`] + [`embedded`] (objects), [`auth`] (token verification)
//! - leaf types: [`identity`], [`config`], [`wire`] (the API's bodies), [`telemetry`],
//!   [`idle_body`]
//!
//! [`client`] is the API client behind `ferry upload`; it shares [`wire`] with the server.
//! [`doctor`] (under [`cli`]) probes a configuration's bucket, database and identity provider.

pub mod api;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod core;
pub mod db;
pub mod doctor;
pub mod embedded;
pub mod identity;
pub mod idle_body;
pub mod startup;
pub mod storage;
pub mod sweep;
pub mod telemetry;
pub mod upload;
pub mod webhook;
pub mod wire;
