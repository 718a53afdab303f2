//! The bridge to the host's JWT signer. JWT-SVIDs are signed on the host (the zone never holds
//! the trust domain's JWT key): the host opens the JwtSigner stream and keeps it open; the
//! agent sends one `JwtSignerAsk{id, audience}` per workload FetchJWTSVID call and the host
//! answers each by id with a token or an error.
//!
//! One host stream at a time: a new one replaces the old, whose waiting asks fail. Asks
//! waiting when the stream ends fail too, and so does an ask the host leaves unanswered for
//! the timeout. Waiting asks are bounded ([`MAX_PENDING_ASKS`]) so that workloads cannot make
//! the agent hold unbounded state for a slow or absent host.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;
use zone_proto::agent::v1::jwt_signer_answer;
use zone_proto::agent::v1::{JwtSignerAnswer, JwtSignerAsk};

use crate::containers::lock;

/// Most asks waiting for the host at once.
pub const MAX_PENDING_ASKS: usize = 1024;
/// How long an ask waits for the host's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why no JWT-SVID came back from the host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignerError {
    #[error("the host's identity authority is not connected")]
    NotConnected,
    #[error("{MAX_PENDING_ASKS} JWT-SVID requests are already waiting for the host's identity authority")]
    TooManyAsks,
    #[error("the host's identity authority did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the host's identity authority went away before answering")]
    Gone,
    #[error("the host's identity authority signed no JWT-SVID: {0}")]
    Refused(String),
}

impl From<SignerError> for Status {
    fn from(error: SignerError) -> Self {
        let message = error.to_string();
        match error {
            SignerError::NotConnected | SignerError::Timeout(_) | SignerError::Gone => {
                Status::unavailable(message)
            }
            SignerError::TooManyAsks => Status::resource_exhausted(message),
            SignerError::Refused(_) => Status::permission_denied(message),
        }
    }
}

type Reply = oneshot::Sender<Result<String, SignerError>>;
/// What the agent sends the host: the JwtSigner RPC's response stream.
pub type Asks = ReceiverStream<Result<JwtSignerAsk, Status>>;

/// The bridge; clones share it.
#[derive(Debug, Clone)]
pub struct JwtSigner {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    links: Mutex<Links>,
    next_id: AtomicU64,
    timeout: Duration,
}

#[derive(Debug, Default)]
struct Links {
    host: Option<Host>,
    /// Counts host streams; each ask remembers the stream it went to.
    generation: u64,
    waiting: HashMap<u64, Waiting>,
}

#[derive(Debug)]
struct Host {
    generation: u64,
    asks: mpsc::Sender<Result<JwtSignerAsk, Status>>,
    /// Dropped when this stream is replaced: stops reading its answers.
    _replaced: oneshot::Sender<()>,
}

#[derive(Debug)]
struct Waiting {
    generation: u64,
    reply: Reply,
}

impl Default for JwtSigner {
    fn default() -> Self {
        Self::new()
    }
}

impl JwtSigner {
    pub fn new() -> Self {
        Self::with_timeout(ANSWER_TIMEOUT)
    }

    /// A bridge whose asks wait `timeout` for the host.
    pub fn with_timeout(timeout: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                links: Mutex::new(Links::default()),
                // 0 is what an answer without an id decodes to: never an ask's.
                next_id: AtomicU64::new(1),
                timeout,
            }),
        }
    }

    /// Takes `answers` (the host's side of the JwtSigner RPC) as the host's stream, replacing
    /// any previous one, and returns the asks to send it. Must be called in a Tokio runtime:
    /// a task reads the answers until the stream ends or is replaced.
    pub fn connect<S>(&self, answers: S) -> Asks
    where
        S: Stream<Item = Result<JwtSignerAnswer, Status>> + Send + Unpin + 'static,
    {
        let (asks, outgoing) = mpsc::channel(MAX_PENDING_ASKS);
        let (replaced_sender, replaced) = oneshot::channel();
        let generation = {
            let mut links = lock(&self.shared.links);
            links.generation += 1;
            let generation = links.generation;
            let old = links.host.replace(Host {
                generation,
                asks,
                _replaced: replaced_sender,
            });
            if let Some(old) = old {
                tracing::info!("the host's JWT signer stream replaced");
                fail_waiting(&mut links, old.generation);
            }
            generation
        };
        tracing::info!(generation, "the host's JWT signer connected");
        tokio::spawn(self.clone().read_answers(generation, answers, replaced));
        ReceiverStream::new(outgoing)
    }

    /// Whether a host stream is open.
    pub fn is_connected(&self) -> bool {
        lock(&self.shared.links).host.is_some()
    }

    /// Asks the host for a JWT-SVID for `audience` and waits for its answer.
    pub async fn sign(&self, audience: Vec<String>) -> Result<String, SignerError> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        {
            let mut links = lock(&self.shared.links);
            if links.waiting.len() >= MAX_PENDING_ASKS {
                return Err(SignerError::TooManyAsks);
            }
            let host = links.host.as_ref().ok_or(SignerError::NotConnected)?;
            let generation = host.generation;
            host.asks
                .try_send(Ok(JwtSignerAsk { id, audience }))
                .map_err(|e| match e {
                    // Asks that timed out still fill the queue of a host that reads none.
                    mpsc::error::TrySendError::Full(_) => SignerError::TooManyAsks,
                    mpsc::error::TrySendError::Closed(_) => SignerError::Gone,
                })?;
            links.waiting.insert(id, Waiting { generation, reply });
        }
        // Forgets the ask however this ends: answered, timed out, or the caller gone.
        let _forget = Forget {
            shared: &self.shared,
            id,
        };
        match tokio::time::timeout(self.shared.timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_dropped)) => Err(SignerError::Gone),
            Err(_elapsed) => Err(SignerError::Timeout(self.shared.timeout)),
        }
    }

    /// Routes the host's answers until its stream ends or is replaced.
    async fn read_answers<S>(
        self,
        generation: u64,
        mut answers: S,
        mut replaced: oneshot::Receiver<()>,
    ) where
        S: Stream<Item = Result<JwtSignerAnswer, Status>> + Unpin,
    {
        loop {
            let next = tokio::select! {
                next = answers.next() => next,
                _ = &mut replaced => break,
            };
            match next {
                Some(Ok(answer)) => self.route(answer),
                Some(Err(status)) => {
                    tracing::warn!(generation, %status, "the host's JWT signer stream failed");
                    break;
                }
                None => break,
            }
        }
        self.disconnect(generation);
    }

    fn route(&self, answer: JwtSignerAnswer) {
        let Some(waiting) = lock(&self.shared.links).waiting.remove(&answer.id) else {
            tracing::warn!(
                id = answer.id,
                "the host answered an ask nobody waits for (timed out or unknown): ignored"
            );
            return;
        };
        let result = match answer.result {
            Some(jwt_signer_answer::Result::Token(token)) if !token.is_empty() => Ok(token),
            Some(jwt_signer_answer::Result::Token(_)) => {
                Err(SignerError::Refused("the answer's token is empty".into()))
            }
            Some(jwt_signer_answer::Result::Error(error)) => Err(SignerError::Refused(error)),
            None => Err(SignerError::Refused(
                "the answer holds neither a token nor an error".into(),
            )),
        };
        // The workload may have gone meanwhile.
        let _ = waiting.reply.send(result);
    }

    /// The stream of `generation` ended: it is no longer the host's (unless replaced
    /// already) and its waiting asks fail.
    fn disconnect(&self, generation: u64) {
        let mut links = lock(&self.shared.links);
        if links
            .host
            .as_ref()
            .is_some_and(|host| host.generation == generation)
        {
            links.host = None;
            tracing::warn!(generation, "the host's JWT signer disconnected");
        }
        fail_waiting(&mut links, generation);
    }
}

/// Fails the asks sent on stream `generation`.
fn fail_waiting(links: &mut Links, generation: u64) {
    let ids: Vec<u64> = links
        .waiting
        .iter()
        .filter(|(_, waiting)| waiting.generation == generation)
        .map(|(id, _)| *id)
        .collect();
    for id in ids {
        if let Some(waiting) = links.waiting.remove(&id) {
            let _ = waiting.reply.send(Err(SignerError::Gone));
        }
    }
}

/// Removes an ask from the waiting ones when dropped.
struct Forget<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(&self.shared.links).waiting.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Answers = mpsc::Sender<Result<JwtSignerAnswer, Status>>;

    /// A host stream: what the test answers with, and the asks the agent sends.
    fn host(signer: &JwtSigner) -> (Answers, Asks) {
        let (answers, incoming) = mpsc::channel(16);
        let asks = signer.connect(ReceiverStream::new(incoming));
        (answers, asks)
    }

    // The stream's item type is tonic's.
    #[allow(clippy::result_large_err)]
    fn token(id: u64, token: &str) -> Result<JwtSignerAnswer, Status> {
        Ok(JwtSignerAnswer {
            id,
            result: Some(jwt_signer_answer::Result::Token(token.into())),
        })
    }

    async fn next_ask(asks: &mut Asks) -> JwtSignerAsk {
        asks.next()
            .await
            .expect("an ask")
            .expect("asks are never errors")
    }

    #[tokio::test]
    async fn test_sign_answers_routed_by_id_out_of_order() {
        let signer = JwtSigner::new();
        let (answers, mut asks) = host(&signer);

        let first = tokio::spawn({
            let signer = signer.clone();
            async move { signer.sign(vec!["a".into()]).await }
        });
        let ask_a = next_ask(&mut asks).await;
        let second = tokio::spawn({
            let signer = signer.clone();
            async move { signer.sign(vec!["b".into(), "c".into()]).await }
        });
        let ask_b = next_ask(&mut asks).await;
        answers.send(token(ask_b.id, "token-b")).await.unwrap();
        answers
            .send(Ok(JwtSignerAnswer {
                id: ask_a.id,
                result: Some(jwt_signer_answer::Result::Error(
                    "audience a refused".into(),
                )),
            }))
            .await
            .unwrap();

        assert_eq!(ask_a.audience, ["a"]);
        assert_eq!(ask_b.audience, ["b", "c"]);
        assert_ne!(ask_a.id, ask_b.id);
        assert_eq!(second.await.unwrap(), Ok("token-b".to_string()));
        let refused = first.await.unwrap().unwrap_err();
        assert_eq!(refused, SignerError::Refused("audience a refused".into()));
        assert_eq!(Status::from(refused).code(), tonic::Code::PermissionDenied);
        assert!(lock(&signer.shared.links).waiting.is_empty());
    }

    #[tokio::test]
    async fn test_sign_without_host_unavailable() {
        let signer = JwtSigner::new();

        let err = signer.sign(vec!["a".into()]).await.unwrap_err();

        assert_eq!(err, SignerError::NotConnected);
        let status = Status::from(err);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(
            status.message(),
            "the host's identity authority is not connected"
        );
    }

    #[tokio::test]
    async fn test_sign_unanswered_times_out_and_is_forgotten() {
        let signer = JwtSigner::with_timeout(Duration::from_millis(50));
        let (answers, mut asks) = host(&signer);

        let err = signer.sign(vec!["a".into()]).await.unwrap_err();
        let ask = next_ask(&mut asks).await;
        // A late answer goes nowhere and breaks nothing.
        answers.send(token(ask.id, "late")).await.unwrap();
        let again = tokio::spawn({
            let signer = signer.clone();
            async move { signer.sign(vec!["b".into()]).await }
        });
        let ask = next_ask(&mut asks).await;
        answers.send(token(ask.id, "in time")).await.unwrap();

        assert_eq!(err, SignerError::Timeout(Duration::from_millis(50)));
        let status = Status::from(err);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(status.message().contains("50ms"), "{}", status.message());
        assert_eq!(again.await.unwrap(), Ok("in time".to_string()));
    }

    #[tokio::test]
    async fn test_sign_stream_ends_mid_ask_fails_and_disconnects() {
        let signer = JwtSigner::new();
        let (answers, mut asks) = host(&signer);
        let waiting = tokio::spawn({
            let signer = signer.clone();
            async move { signer.sign(vec!["a".into()]).await }
        });
        next_ask(&mut asks).await;

        drop(answers);

        assert_eq!(waiting.await.unwrap(), Err(SignerError::Gone));
        assert!(!signer.is_connected());
        assert_eq!(
            signer.sign(vec!["a".into()]).await,
            Err(SignerError::NotConnected)
        );
    }

    #[tokio::test]
    async fn test_sign_stream_error_fails_waiting_asks() {
        let signer = JwtSigner::new();
        let (answers, mut asks) = host(&signer);
        let waiting = tokio::spawn({
            let signer = signer.clone();
            async move { signer.sign(vec!["a".into()]).await }
        });
        next_ask(&mut asks).await;

        answers.send(Err(Status::cancelled("gone"))).await.unwrap();

        assert_eq!(waiting.await.unwrap(), Err(SignerError::Gone));
        assert!(!signer.is_connected());
    }

    #[tokio::test]
    async fn test_connect_replaces_stream_old_asks_fail_new_ones_served() {
        let signer = JwtSigner::new();
        let (_old_answers, mut old_asks) = host(&signer);
        let waiting = tokio::spawn({
            let signer = signer.clone();
            async move { signer.sign(vec!["a".into()]).await }
        });
        next_ask(&mut old_asks).await;

        let (answers, mut asks) = host(&signer);
        let served = tokio::spawn({
            let signer = signer.clone();
            async move { signer.sign(vec!["b".into()]).await }
        });
        let ask = next_ask(&mut asks).await;
        answers.send(token(ask.id, "new")).await.unwrap();

        assert_eq!(waiting.await.unwrap(), Err(SignerError::Gone));
        assert_eq!(served.await.unwrap(), Ok("new".to_string()));
        // The old stream's asks end: nothing more goes to the replaced host.
        assert!(old_asks.next().await.is_none());
        assert!(signer.is_connected());
    }

    #[tokio::test]
    async fn test_unknown_answer_ignored_then_real_one_routed() {
        let signer = JwtSigner::new();
        let (answers, mut asks) = host(&signer);
        let waiting = tokio::spawn({
            let signer = signer.clone();
            async move { signer.sign(vec!["a".into()]).await }
        });
        let ask = next_ask(&mut asks).await;

        answers.send(token(ask.id + 1000, "stray")).await.unwrap();
        answers.send(token(0, "no id")).await.unwrap();
        answers
            .send(Ok(JwtSignerAnswer {
                id: ask.id,
                result: None,
            }))
            .await
            .unwrap();

        let err = waiting.await.unwrap().unwrap_err();
        assert!(
            matches!(err, SignerError::Refused(ref m) if m.contains("neither")),
            "{err}"
        );
        assert!(signer.is_connected());
    }

    #[tokio::test]
    async fn test_sign_bounded_pending_asks() {
        let signer = JwtSigner::new();
        let (_answers, _asks) = host(&signer);
        let mut waiting = Vec::new();
        for _ in 0..MAX_PENDING_ASKS {
            let signer = signer.clone();
            waiting.push(tokio::spawn(
                async move { signer.sign(vec!["a".into()]).await },
            ));
        }
        while lock(&signer.shared.links).waiting.len() < MAX_PENDING_ASKS {
            tokio::task::yield_now().await;
        }

        let err = signer.sign(vec!["a".into()]).await.unwrap_err();

        assert_eq!(err, SignerError::TooManyAsks);
        assert_eq!(Status::from(err).code(), tonic::Code::ResourceExhausted);
        // A workload that gives up frees its place.
        waiting.pop().expect("asks").abort();
        while lock(&signer.shared.links).waiting.len() >= MAX_PENDING_ASKS {
            tokio::task::yield_now().await;
        }
        for task in waiting {
            task.abort();
        }
    }
}
