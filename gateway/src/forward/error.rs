//! Forwarder errors, one enum per operation.

/// Starting the forwarder failed (the gateway does not start: a configuration problem).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Neither `forward.region`, the stream ARN nor the AWS chain names a region.
    #[error(
        "forward: no AWS region: set forward.region, use a stream ARN, or set AWS_REGION / a profile region"
    )]
    NoRegion,
}

/// How a Kinesis call failed as a whole. Every kind is retried (readings stay buffered);
/// the kind decides the metric label, the health text and whether the request may have
/// been written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiErrorKind {
    /// No connection (refused, DNS, TLS).
    Unreachable,
    /// The call timed out; Kinesis may have written the records.
    Timeout,
    /// Credentials missing, invalid or expired, or access denied.
    Auth,
    /// The stream does not exist (or not in this region/account).
    NotFound,
    /// Request-level throttling (`LimitExceededException`, a whole-request
    /// `ProvisionedThroughputExceededException`, KMS throttling).
    Throttled,
    /// Kinesis answered with a server error or an unreadable response.
    Server,
    /// Kinesis rejected the request as invalid (a bug here; retried with backoff).
    Invalid,
}

impl ApiErrorKind {
    /// Stable label for `gateway_forward_request_failures_total{kind}`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::Timeout => "timeout",
            Self::Auth => "auth",
            Self::NotFound => "not_found",
            Self::Throttled => "throttled",
            Self::Server => "server",
            Self::Invalid => "invalid",
        }
    }

    /// False when Kinesis certainly did not write the request (it answered with a client
    /// error): its tokens can be refunded. A broken connection may have been written.
    pub fn maybe_written(self) -> bool {
        matches!(self, Self::Unreachable | Self::Timeout | Self::Server)
    }
}

/// A Kinesis call failed as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// What kind of failure.
    pub kind: ApiErrorKind,
    /// The SDK's error chain.
    pub message: String,
}

impl ApiError {
    /// An error of `kind`.
    pub fn new(kind: ApiErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}
