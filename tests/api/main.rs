//! Integration tests: the real server on port 0, real bytes through real presigned URLs,
//! against both metadata backends (SQLite, and Postgres when `FERRY_TEST_POSTGRES_URL` is set,
//! as the README's test command does).

mod helpers;

mod auth;
mod auth_provider;
mod bad_input;
mod checksums;
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
mod settings;
mod webhooks;
