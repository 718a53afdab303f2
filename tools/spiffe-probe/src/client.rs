//! Reaching the Workload API: the address from `SPIFFE_ENDPOINT_SOCKET` (SPIFFE Workload API
//! standard, section 4.1), and the first contact retried for `--wait` while the API is not
//! there yet: a container may start before the zone agent has its socket or its identity.

use std::future::Future;
use std::time::Duration;

use spiffe::transport::Endpoint;
use spiffe::WorkloadApiClient;
use tokio::time::Instant;

use crate::error::ProbeError;

/// The environment variable naming the Workload API's address.
pub const ENDPOINT_ENV: &str = "SPIFFE_ENDPOINT_SOCKET";

/// Pause between two attempts while the API is unavailable.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// A call the API accepted but never answered is given up after the rest of `--wait`, but no
/// sooner than this (an agent may hold the first answer until the host decided the identity).
const MIN_ANSWER_TIME: Duration = Duration::from_secs(10);

/// Where the Workload API is and how long to wait for it.
#[derive(Debug)]
pub struct Api {
    /// The address as `SPIFFE_ENDPOINT_SOCKET` gave it, for messages.
    shown: String,
    endpoint: Endpoint,
    wait: Duration,
}

impl Api {
    /// The API at `SPIFFE_ENDPOINT_SOCKET`.
    pub fn from_env(wait: Duration) -> Result<Self, ProbeError> {
        let value = std::env::var_os(ENDPOINT_ENV).ok_or(ProbeError::EndpointUnset)?;
        Self::parse(&value.to_string_lossy(), wait)
    }

    fn parse(value: &str, wait: Duration) -> Result<Self, ProbeError> {
        if value.is_empty() {
            return Err(ProbeError::EndpointUnset);
        }
        let endpoint = Endpoint::parse(value).map_err(|source| ProbeError::EndpointInvalid {
            value: value.to_owned(),
            source,
        })?;
        Ok(Self {
            shown: value.to_owned(),
            endpoint,
            wait,
        })
    }

    /// Connects and runs `call`, again and again while the API is unavailable (see
    /// [`ProbeError::is_unavailable`]) until `--wait` is over; any other error is returned at
    /// once.
    pub async fn first_contact<T, F, Fut>(&self, mut call: F) -> Result<T, ProbeError>
    where
        F: FnMut(WorkloadApiClient) -> Fut,
        Fut: Future<Output = Result<T, ProbeError>>,
    {
        let start = Instant::now();
        let deadline = start + self.wait;
        loop {
            let answer_time = deadline
                .saturating_duration_since(Instant::now())
                .max(MIN_ANSWER_TIME);
            let attempt = async {
                let client = WorkloadApiClient::connect(self.endpoint.clone())
                    .await
                    .map_err(|source| ProbeError::Api {
                        rpc: "connect",
                        source,
                    })?;
                call(client).await
            };
            let err = match tokio::time::timeout(answer_time, attempt).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(err)) => err,
                Err(_) => return Err(self.no_answer(answer_time)),
            };
            let now = Instant::now();
            if !err.is_unavailable() {
                return Err(err);
            }
            if now >= deadline {
                return Err(ProbeError::Unavailable {
                    endpoint: self.shown.clone(),
                    waited: now - start,
                    source: Box::new(err),
                });
            }
            tokio::time::sleep(RETRY_PAUSE.min(deadline - now)).await;
        }
    }

    /// The error for a call that got no answer within `after`.
    pub fn no_answer(&self, after: Duration) -> ProbeError {
        ProbeError::NoAnswer {
            endpoint: self.shown.clone(),
            after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_api_parse_accepts_the_zone_agent_socket() {
        let api = Api::parse("unix:///run/spiffe/workload.sock", Duration::ZERO).expect("parses");
        assert_eq!(
            api.endpoint,
            Endpoint::Unix("/run/spiffe/workload.sock".into())
        );
    }

    #[test]
    fn test_api_parse_empty_is_unset() {
        assert!(matches!(
            Api::parse("", Duration::ZERO),
            Err(ProbeError::EndpointUnset)
        ));
    }

    #[test]
    fn test_api_parse_bare_path_is_invalid_and_says_what_is_expected() {
        let err = Api::parse("/run/spiffe/workload.sock", Duration::ZERO).expect_err("no scheme");
        let text = crate::error::render(&err);
        assert!(
            text.starts_with(
                "SPIFFE_ENDPOINT_SOCKET=\"/run/spiffe/workload.sock\" is not a Workload API \
                 address (unix:///PATH or tcp://IP:PORT): "
            ),
            "{text}"
        );
    }
}
