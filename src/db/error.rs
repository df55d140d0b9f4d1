//! The database port's one error type. Each backend converts its driver's errors into it.

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database cannot be reached, is restarting, or timed out: worth a retry.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The key is recorded for another user.
    #[error("object key already recorded for another user")]
    KeyTaken,
    /// The key's file was deleted: it is never recorded again.
    #[error("object key belongs to a deleted file")]
    KeyDeleted,
    /// The row or reservation would take the user past a limit.
    #[error(transparent)]
    Quota(#[from] super::QuotaExceeded),
    /// The connection settings cannot work (bad URL, unreadable root certificate...).
    #[error("database configuration: {0}")]
    Config(String),
    /// The schema could not be brought up to date.
    #[error("migration failed: {0}")]
    Migrate(#[source] BoxError),
    #[error("database error: {0}")]
    Other(#[source] BoxError),
}

impl DbError {
    pub(crate) fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(Box::new(e))
    }

    pub(crate) fn other(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Other(Box::new(e))
    }
}
