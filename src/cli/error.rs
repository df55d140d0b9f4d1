//! Why a command failed, and the exit code each reason gives.
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success |
//! | 1 | the work failed: an upload, download or delete refused or interrupted, a sweep that could not finish, a `doctor` check failed |
//! | 2 | the command line is wrong (printed by the argument parser) |
//! | 3 | the configuration is invalid (the message names the variable) |
//! | 4 | Ferry could not start or reach what it needs: a port, the database, the bucket |
//! | 130 | `ferry serve` got a second SIGTERM or Ctrl-C and exited without draining |

use crate::client::ClientError;
use crate::config::ConfigError;
use crate::core::CoreError;
use crate::startup::StartupError;
use crate::storage::StoreError;
use crate::sweep::SweepError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("{0}")]
    Usage(String),
    #[error("cleanup failed: {0}")]
    Sweep(#[from] SweepError),
    #[error("cannot apply the CORS rules: {0}")]
    Bucket(#[from] StoreError),
    #[error("{failed} of {total} uploads failed")]
    Uploads { failed: usize, total: usize },
    #[error("{failed} checks failed")]
    Doctor { failed: usize },
    #[error("{failed} of {total} deletes failed")]
    Deletes { failed: usize, total: usize },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("server stopped with an error: {0}")]
    Serve(#[from] std::io::Error),
}

impl CliError {
    /// The process exit code for this failure (see the module docs).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            Self::Config(_) => 3,
            Self::Startup(StartupError::Core(_) | StartupError::Bind { .. }) | Self::Core(_) => 4,
            Self::Startup(StartupError::InsecureDevMode(_)) => 3,
            Self::Sweep(_)
            | Self::Bucket(_)
            | Self::Uploads { .. }
            | Self::Deletes { .. }
            | Self::Doctor { .. }
            | Self::Client(_)
            | Self::Serve(_) => 1,
        }
    }
}
