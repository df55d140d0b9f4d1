//! Integration tests: the real server on port 0, real bytes through real presigned URLs.
//! Tests that reach the metadata database run on both backends (`on_both_backends!`: SQLite,
//! and Postgres at `FERRY_TEST_POSTGRES_URL`, which the README's test command sets); the rest
//! run once (`on_one_backend!`).

mod helpers;

mod auth;
mod auth_provider;
mod bad_input;
mod checksums;
mod cli_remote;
mod doctor;
mod embedded_store;
mod faults;
mod files;
mod guide;
mod health;
mod hostile;
mod hostile_store;
mod instances;
mod integrity;
mod lifecycle;
mod multipart;
mod page;
mod pooler;
mod postgres;
mod presigned;
mod quota;
mod s3_compat;
mod s3_tools;
mod schemathesis;
mod settings;
mod store_auth;
mod store_limits;
mod uppy;
mod webhooks;
