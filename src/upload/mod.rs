//! The upload domain: the one home of Ferry's upload logic.
//!
//! [`Uploads`] issues keys, authorizes a key for a caller, confirms uploads (single PUT and
//! multipart), lists, signs downloads and deletes. Every way in (the guide's endpoints, the
//! multipart routes, the B2 webhook, the CLI through the API) calls it; none re-implements a
//! check. Below it: [`ticket`] (keys that prove whose they are), [`name`] (cleaning file names),
//! [`policy`] (size and type rules), and the database and storage ports.

pub mod checksum;
mod error;
mod files;
mod multipart;
pub mod name;
pub mod pending;
pub mod policy;
mod service;
pub mod signing;
pub mod ticket;

pub use checksum::ChecksumError;
pub use error::UploadError;
pub use multipart::{MAX_PARTS, MAX_URLS_PER_CALL, MultipartUpload, part_size};
pub use name::{NameError, clean_file_name};
pub use pending::PendingRecorder;
pub use policy::{PolicyError, UploadPolicy};
pub use service::{Presigned, UploadRequest, Uploads};
pub use signing::{ClientRequest, Signed};
pub use ticket::{Grant, GrantAction, Ticket, TicketError, TicketSigner, now_unix};
