//! A fake Workload API on a Unix socket, from the proto the zone agent serves
//! (`zone_proto::spiffe_workload`), scripted per test. Like a real server it refuses calls
//! without the `workload.spiffe.io: true` metadata (SPIFFE Workload API standard, 6.2).

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::Stream;
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::{Code, Request, Response, Status};
use zone_proto::spiffe_workload::spiffe_workload_api_server::{
    SpiffeWorkloadApi, SpiffeWorkloadApiServer,
};
use zone_proto::spiffe_workload::{
    JwtBundlesRequest, JwtBundlesResponse, Jwtsvid, JwtsvidRequest, JwtsvidResponse,
    ValidateJwtsvidRequest, ValidateJwtsvidResponse, X509BundlesRequest, X509BundlesResponse,
    X509svid, X509svidRequest, X509svidResponse,
};

use crate::pki::{Svid, TRUST_DOMAIN, WORKLOAD_ID};

/// What the fake answers.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// The first this many calls (of any RPC) get UNAVAILABLE.
    pub unavailable_first: usize,
    /// Every call gets this status (after the UNAVAILABLE ones).
    pub refuse: Option<(Code, String)>,
    /// FetchX509SVID sends these SVIDs, one message each, `pause` apart, then keeps the
    /// stream open; the CA certificate is each message's bundle.
    pub svids: Vec<Svid>,
    pub pause: Duration,
    /// FetchX509SVID ends its stream after the last SVID instead of keeping it open.
    pub close_after_svids: bool,
    pub bundle: Vec<u8>,
    /// FetchJWTSVID's token.
    pub jwt: String,
    /// FetchJWTBundles' JWK Set for the trust domain.
    pub jwks: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Fake {
    script: Script,
    calls: Arc<AtomicUsize>,
    /// The audiences FetchJWTSVID was asked for.
    audiences: Arc<Mutex<Vec<Vec<String>>>>,
}

impl Fake {
    // tonic's handlers return Result<_, Status>: the size is theirs.
    #[allow(clippy::result_large_err)]
    fn admit<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if request
            .metadata()
            .get("workload.spiffe.io")
            .and_then(|v| v.to_str().ok())
            != Some("true")
        {
            return Err(Status::invalid_argument(
                "missing workload.spiffe.io: true metadata",
            ));
        }
        if call < self.script.unavailable_first {
            return Err(Status::unavailable(
                "the zone's identity is not decided yet",
            ));
        }
        match &self.script.refuse {
            Some((code, message)) => Err(Status::new(*code, message.clone())),
            None => Ok(()),
        }
    }
}

type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl SpiffeWorkloadApi for Fake {
    type FetchX509SVIDStream = Streamed<X509svidResponse>;
    type FetchX509BundlesStream = Streamed<X509BundlesResponse>;
    type FetchJWTBundlesStream = Streamed<JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        request: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        self.admit(&request)?;
        let (tx, rx) = mpsc::channel(4);
        let script = self.script.clone();
        tokio::spawn(async move {
            for (i, svid) in script.svids.iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(script.pause).await;
                }
                let message = X509svidResponse {
                    svids: vec![X509svid {
                        spiffe_id: WORKLOAD_ID.to_owned(),
                        x509_svid: svid.leaf.clone(),
                        x509_svid_key: svid.key.clone(),
                        bundle: script.bundle.clone(),
                        hint: String::new(),
                    }],
                    ..Default::default()
                };
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
            }
            if !script.close_after_svids {
                tx.closed().await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        self.admit(&request)?;
        Err(Status::unimplemented("not used by spiffe-probe"))
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        self.admit(&request)?;
        let audience = request.into_inner().audience;
        self.audiences
            .lock()
            .expect("no test thread panicked holding it")
            .push(audience);
        Ok(Response::new(JwtsvidResponse {
            svids: vec![Jwtsvid {
                spiffe_id: WORKLOAD_ID.to_owned(),
                svid: self.script.jwt.clone(),
                hint: String::new(),
            }],
        }))
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        self.admit(&request)?;
        let message = JwtBundlesResponse {
            bundles: HashMap::from([(TRUST_DOMAIN.to_owned(), self.script.jwks.clone())]),
        };
        // Like a real server: the stream stays open for bundle updates.
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            if tx.send(Ok(message)).await.is_ok() {
                tx.closed().await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn validate_jwtsvid(
        &self,
        request: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        self.admit(&request)?;
        Err(Status::unimplemented("not used by spiffe-probe"))
    }
}

/// A running fake; dropping it stops it.
pub struct Server {
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    pub socket: PathBuf,
    fake: Fake,
}

impl Server {
    pub fn start(script: Script) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let socket = dir.path().join("workload.sock");
        let fake = Fake {
            script,
            calls: Arc::default(),
            audiences: Arc::default(),
        };
        let listener = {
            let _entered = runtime.enter();
            UnixListener::bind(&socket).expect("bind the fake's socket")
        };
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(SpiffeWorkloadApiServer::new(fake.clone()))
                .serve_with_incoming(UnixListenerStream::new(listener)),
        );
        Self {
            _runtime: runtime,
            _dir: dir,
            socket,
            fake,
        }
    }

    /// `SPIFFE_ENDPOINT_SOCKET` for this server.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// How many calls it got.
    pub fn calls(&self) -> usize {
        self.fake.calls.load(Ordering::SeqCst)
    }

    /// The audiences each FetchJWTSVID asked for.
    pub fn jwt_audiences(&self) -> Vec<Vec<String>> {
        self.fake
            .audiences
            .lock()
            .expect("no test thread panicked holding it")
            .clone()
    }
}
