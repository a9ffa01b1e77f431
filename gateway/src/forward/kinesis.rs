//! The two Kinesis calls the forwarder makes, behind a trait (the seam tests use), and
//! their implementation with `aws-sdk-kinesis`.
//!
//! The SDK client uses the standard credential and region chain, `forward.region` /
//! `forward.endpoint_url` overrides (`AWS_ENDPOINT_URL` works through the chain), explicit
//! connect / attempt / operation timeouts, and no SDK retries: a failed call is retried by the
//! forwarder, per record and per shard, so one shard's trouble never delays another.

use super::config::{StreamRef, ValidForwardConfig};
use super::error::{ApiError, ApiErrorKind, StartError};
use super::record::OutRecord;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardFilter, ShardFilterType};
use std::future::Future;
use std::pin::Pin;

/// A boxed future (the trait is used as a trait object).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An open shard as listed: (`ShardId`, `StartingHashKey`, `EndingHashKey`).
pub type ListedShard = (String, String, String);

/// Outcome of one record of a PutRecords call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutResult {
    /// Written to `shard_id`.
    Accepted {
        /// The shard Kinesis wrote it to.
        shard_id: String,
    },
    /// Not written.
    Failed {
        /// `ProvisionedThroughputExceededException` or `InternalFailure`.
        code: String,
        /// Kinesis' message.
        message: String,
    },
}

/// Error code of a throttled record.
pub const THROTTLED: &str = "ProvisionedThroughputExceededException";

/// The Kinesis data-plane calls the forwarder needs.
pub trait KinesisApi: Send + Sync + std::fmt::Debug + 'static {
    /// Every open shard of the stream (all pages).
    fn list_open_shards(&self) -> BoxFuture<'_, Result<Vec<ListedShard>, ApiError>>;

    /// PutRecords with the device ID as partition key (and an aggregate's explicit hash key);
    /// one result per record, in order.
    fn put_records<'a>(
        &'a self,
        records: &'a [OutRecord],
    ) -> BoxFuture<'a, Result<Vec<PutResult>, ApiError>>;
}

/// [`KinesisApi`] over `aws-sdk-kinesis`.
#[derive(Debug, Clone)]
pub struct SdkKinesis {
    client: aws_sdk_kinesis::Client,
    stream: StreamRef,
}

impl SdkKinesis {
    /// Builds the client from the standard chain and the overrides in `config`. Fails only
    /// when no region can be found (credentials are resolved per call, so a gateway without
    /// them starts, buffers, and reports the failure in health).
    pub async fn new(config: &ValidForwardConfig) -> Result<Self, StartError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(config.connect_timeout)
                    .operation_attempt_timeout(config.attempt_timeout)
                    .operation_timeout(config.operation_timeout)
                    .build(),
            )
            .retry_config(RetryConfig::disabled());
        if let Some(region) = &config.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(url) = &config.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err(StartError::NoRegion);
        }
        Ok(Self {
            client: aws_sdk_kinesis::Client::new(&sdk),
            stream: config.stream.clone(),
        })
    }

    /// Wraps a client built elsewhere (tests, tools). It should have timeouts and no
    /// retries, like [`Self::new`] builds.
    pub fn from_client(client: aws_sdk_kinesis::Client, stream: StreamRef) -> Self {
        Self { client, stream }
    }
}

/// What `DescribeStreamSummary` says of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    /// `ACTIVE`, `CREATING`, `UPDATING` or `DELETING`.
    pub status: String,
    /// Open shards as the summary counts them.
    pub open_shards: u32,
}

impl SdkKinesis {
    /// `DescribeStreamSummary` of the stream (`gateway validate --online`).
    pub async fn describe_stream(&self) -> Result<StreamSummary, ApiError> {
        let request = self.client.describe_stream_summary();
        let request = match &self.stream {
            StreamRef::Name(n) => request.stream_name(n),
            StreamRef::Arn(a) => request.stream_arn(a),
        };
        let out = request.send().await.map_err(classify)?;
        let summary = out.stream_description_summary().ok_or_else(|| {
            ApiError::new(ApiErrorKind::Server, "DescribeStreamSummary: no summary")
        })?;
        Ok(StreamSummary {
            status: summary.stream_status().as_str().to_owned(),
            open_shards: u32::try_from(summary.open_shard_count()).unwrap_or(0),
        })
    }
}

/// An error and its causes on one line (`service error: ResourceNotFoundException: Stream
/// ... not found`), without the SDK's debug dump of the response.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// Maps an SDK error to a kind (all are retried; see [`ApiErrorKind`]).
fn classify<E>(e: SdkError<E, HttpResponse>) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let message = error_chain(&e);
    let lower = message.to_ascii_lowercase();
    let kind = match &e {
        SdkError::TimeoutError(_) => ApiErrorKind::Timeout,
        SdkError::DispatchFailure(d) if d.is_timeout() => ApiErrorKind::Timeout,
        _ if lower.contains("credential") || lower.contains("identity") => ApiErrorKind::Auth,
        SdkError::DispatchFailure(_) => ApiErrorKind::Unreachable,
        SdkError::ResponseError(_) => ApiErrorKind::Server,
        SdkError::ServiceError(s) => match s.err().code().unwrap_or_default() {
            "ResourceNotFoundException" => ApiErrorKind::NotFound,
            THROTTLED
            | "LimitExceededException"
            | "ThrottlingException"
            | "KMSThrottlingException" => ApiErrorKind::Throttled,
            "AccessDeniedException"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "IncompleteSignature"
            | "MissingAuthenticationToken"
            | "ExpiredTokenException"
            | "KMSAccessDeniedException" => ApiErrorKind::Auth,
            "InvalidArgumentException" | "ValidationException" | "SerializationException" => {
                ApiErrorKind::Invalid
            }
            _ if s.raw().status().is_client_error() => ApiErrorKind::Invalid,
            _ => ApiErrorKind::Server,
        },
        _ => ApiErrorKind::Invalid,
    };
    ApiError::new(kind, message)
}

impl KinesisApi for SdkKinesis {
    fn list_open_shards(&self) -> BoxFuture<'_, Result<Vec<ListedShard>, ApiError>> {
        Box::pin(async move {
            let filter = ShardFilter::builder()
                .r#type(ShardFilterType::AtLatest)
                .build()
                .map_err(|e| ApiError::new(ApiErrorKind::Invalid, e.to_string()))?;
            let mut shards = Vec::new();
            let mut token: Option<String> = None;
            loop {
                // NextToken alone names the stream on later pages.
                let request = match token.take() {
                    Some(t) => self.client.list_shards().next_token(t),
                    None => {
                        let r = self.client.list_shards().shard_filter(filter.clone());
                        match &self.stream {
                            StreamRef::Name(n) => r.stream_name(n),
                            StreamRef::Arn(a) => r.stream_arn(a),
                        }
                    }
                };
                let out = request.send().await.map_err(classify)?;
                for s in out.shards() {
                    // AT_LATEST lists open shards only; closed ones (an ending sequence
                    // number) are dropped anyway in case an endpoint ignores the filter.
                    let closed = s
                        .sequence_number_range()
                        .and_then(|r| r.ending_sequence_number())
                        .is_some();
                    if let (false, Some(range)) = (closed, s.hash_key_range()) {
                        shards.push((
                            s.shard_id().to_owned(),
                            range.starting_hash_key().to_owned(),
                            range.ending_hash_key().to_owned(),
                        ));
                    }
                }
                match out.next_token() {
                    Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                    _ => return Ok(shards),
                }
            }
        })
    }

    fn put_records<'a>(
        &'a self,
        records: &'a [OutRecord],
    ) -> BoxFuture<'a, Result<Vec<PutResult>, ApiError>> {
        Box::pin(async move {
            let entries = records
                .iter()
                .map(|r| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(r.device.as_ref())
                        .set_explicit_hash_key(r.explicit_hash_key.map(|h| h.to_string()))
                        .data(Blob::new(r.data.clone()))
                        .build()
                        .map_err(|e| ApiError::new(ApiErrorKind::Invalid, e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let request = self.client.put_records().set_records(Some(entries));
            let request = match &self.stream {
                StreamRef::Name(n) => request.stream_name(n),
                StreamRef::Arn(a) => request.stream_arn(a),
            };
            let out = request.send().await.map_err(classify)?;
            if out.records().len() != records.len() {
                return Err(ApiError::new(
                    ApiErrorKind::Server,
                    format!(
                        "PutRecords answered {} results for {} records",
                        out.records().len(),
                        records.len()
                    ),
                ));
            }
            Ok(out
                .records()
                .iter()
                .map(|r| match (r.error_code(), r.shard_id()) {
                    (None, Some(shard)) => PutResult::Accepted {
                        shard_id: shard.to_owned(),
                    },
                    (code, _) => PutResult::Failed {
                        code: code.unwrap_or("MissingShardId").to_owned(),
                        message: r.error_message().unwrap_or_default().to_owned(),
                    },
                })
                .collect())
        })
    }
}
