//! The upload domain: object keys, upload tickets and the rules of what may be uploaded.

pub mod name;
pub mod policy;
pub mod ticket;

pub use name::{NameError, clean_file_name};
pub use policy::{PolicyError, UploadPolicy};
pub use ticket::{Ticket, TicketError, TicketSigner, now_unix};
