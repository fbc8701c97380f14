//! Errors shown to the user.

/// An error caused by the user's input (a bad file, a missing project, a
/// wrong flag): the message says what and where, and the process exits
/// with code 2. Anything else exits with code 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

impl UserError {
    pub fn new(msg: impl Into<String>) -> UserError {
        UserError(msg.into())
    }
}

/// Shorthand: `Err(user_error!("…"))`-style construction as an anyhow error.
pub fn user(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UserError::new(msg))
}

/// Exit code for an error: 2 for user errors (anywhere in the chain), 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.chain().any(|e| e.downcast_ref::<UserError>().is_some()) {
        2
    } else {
        1
    }
}
