//! The `zone.agent.v1.Agent` gRPC service: request checking and translation onto
//! [`Containers`]; the work happens there and in [`crate::process`].

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_stream::wrappers::{BroadcastStream, ReceiverStream};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use zone_attest::activation::CredentialChallenge;
use zone_proto::agent::v1::agent_server::Agent;
use zone_proto::agent::v1::shutdown_request::Action;
use zone_proto::agent::v1::{
    ActivateCredentialRequest, ActivateCredentialResponse, AgentReady, CloseStdinRequest,
    CloseStdinResponse, ConfigureNetworkRequest, ConfigureNetworkResponse, ContainerStatsRequest,
    ContainerStatsResponse, CreateContainerRequest, CreateContainerResponse, ExecProcessRequest,
    ExecProcessResponse, InfoRequest, JwtSignerAnswer, JwtSignerAsk, ListProcessesRequest,
    ListProcessesResponse, NewIdentityKeyRequest, NewIdentityKeyResponse, OomEvent,
    OomEventsRequest, OutputChunk, OutputStream, QuoteRequest, QuoteResponse, ReadOutputRequest,
    RemoveContainerRequest, RemoveContainerResponse, ResizePtyRequest, ResizePtyResponse,
    SetIdentityRequest, SetIdentityResponse, ShutdownRequest, ShutdownResponse,
    SignalProcessRequest, SignalProcessResponse, StartProcessRequest, StartProcessResponse,
    TpmKeysRequest, TpmKeysResponse, UpdateContainerRequest, UpdateContainerResponse,
    WaitProcessRequest, WaitProcessResponse, WriteStdinRequest, WriteStdinResponse,
};

use crate::attestation::ZoneTpm;
use crate::containers::Containers;
use crate::identity::Identity;
use crate::network::Network;
use crate::power::PowerAction;
use crate::process::Output;
use crate::reaper::ExitOutcome;
use crate::request_error::RequestError;
use crate::sysinfo;
use crate::wire_spec;

/// The service; `shutdown` receives the action the host asked for.
#[derive(Debug)]
pub struct AgentService {
    containers: Arc<Containers>,
    network: Arc<Network>,
    tpm: ZoneTpm,
    identity: Identity,
    shutdown: watch::Sender<Option<PowerAction>>,
}

impl AgentService {
    /// The zone's service: its network is [`Network::zone`].
    pub fn new(containers: Arc<Containers>, shutdown: watch::Sender<Option<PowerAction>>) -> Self {
        Self::with_network(containers, Arc::new(Network::zone()), shutdown)
    }

    /// A service whose ConfigureNetwork configures `network` (tests give it their own
    /// resolv.conf path).
    pub fn with_network(
        containers: Arc<Containers>,
        network: Arc<Network>,
        shutdown: watch::Sender<Option<PowerAction>>,
    ) -> Self {
        Self::with_identity(containers, network, Identity::new(), shutdown)
    }

    /// A service whose identity RPCs change `identity` (which the zone's Workload API
    /// serves).
    pub fn with_identity(
        containers: Arc<Containers>,
        network: Arc<Network>,
        identity: Identity,
        shutdown: watch::Sender<Option<PowerAction>>,
    ) -> Self {
        Self {
            containers,
            network,
            tpm: ZoneTpm::new(),
            identity,
            shutdown,
        }
    }
}

impl From<RequestError> for Status {
    fn from(error: RequestError) -> Self {
        match error {
            RequestError::InvalidArgument(m) => Status::invalid_argument(m),
            RequestError::NotFound(m) => Status::not_found(m),
            RequestError::AlreadyExists(m) => Status::already_exists(m),
            RequestError::FailedPrecondition(m) => Status::failed_precondition(m),
            RequestError::Unavailable(m) => Status::unavailable(m),
            RequestError::Internal(m) => Status::internal(m),
        }
    }
}

type OutputChunks = Pin<Box<dyn Stream<Item = Result<OutputChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Agent for AgentService {
    async fn create_container(
        &self,
        request: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerResponse>, Status> {
        self.containers.create(request.get_ref())?;
        Ok(Response::new(CreateContainerResponse {}))
    }

    async fn exec_process(
        &self,
        request: Request<ExecProcessRequest>,
    ) -> Result<Response<ExecProcessResponse>, Status> {
        let request = request.get_ref();
        self.containers.exec(
            &request.container_id,
            &request.exec_id,
            request.process.as_ref(),
        )?;
        Ok(Response::new(ExecProcessResponse {}))
    }

    async fn start_process(
        &self,
        request: Request<StartProcessRequest>,
    ) -> Result<Response<StartProcessResponse>, Status> {
        let request = request.get_ref();
        let pid = self
            .containers
            .start(&request.container_id, &request.exec_id)?;
        Ok(Response::new(StartProcessResponse { pid }))
    }

    async fn wait_process(
        &self,
        request: Request<WaitProcessRequest>,
    ) -> Result<Response<WaitProcessResponse>, Status> {
        let request = request.get_ref();
        let process = self
            .containers
            .process(&request.container_id, &request.exec_id)?;
        let ended = process.wait().await;
        let (exit_code, signal) = match ended.exit.outcome {
            ExitOutcome::Exited(code) => (code, 0),
            ExitOutcome::Signaled(signal) => (0, signal),
        };
        let exited_at_unix_nanos = ended
            .exit
            .at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Ok(Response::new(WaitProcessResponse {
            exit_code,
            signal,
            exited_at_unix_nanos,
            error: ended.error,
        }))
    }

    async fn signal_process(
        &self,
        request: Request<SignalProcessRequest>,
    ) -> Result<Response<SignalProcessResponse>, Status> {
        let request = request.get_ref();
        self.containers.signal(
            &request.container_id,
            &request.exec_id,
            request.signal,
            request.all,
        )?;
        Ok(Response::new(SignalProcessResponse {}))
    }

    async fn write_stdin(
        &self,
        request: Request<Streaming<WriteStdinRequest>>,
    ) -> Result<Response<WriteStdinResponse>, Status> {
        let mut messages = request.into_inner();
        let mut target = None;
        let mut bytes_written = 0u64;
        while let Some(message) = messages.message().await? {
            let ids = (message.container_id, message.exec_id);
            let process = match &target {
                None => {
                    let process = self.containers.process(&ids.0, &ids.1)?;
                    target = Some((ids, process.clone()));
                    process
                }
                Some((first, process)) if *first == ids => process.clone(),
                Some(((container, exec), _)) => {
                    return Err(Status::invalid_argument(format!(
                        "WriteStdin messages name {:?}/{:?} after {container:?}/{exec:?}: one \
                         stream writes to one process",
                        ids.0, ids.1
                    )))
                }
            };
            if !message.data.is_empty() {
                let len = message.data.len() as u64;
                process.write_stdin(message.data).await?;
                bytes_written += len;
            }
            if message.close {
                process.close_stdin().await?;
            }
        }
        Ok(Response::new(WriteStdinResponse { bytes_written }))
    }

    async fn close_stdin(
        &self,
        request: Request<CloseStdinRequest>,
    ) -> Result<Response<CloseStdinResponse>, Status> {
        let request = request.get_ref();
        self.containers
            .process(&request.container_id, &request.exec_id)?
            .close_stdin()
            .await?;
        Ok(Response::new(CloseStdinResponse {}))
    }

    type ReadOutputStream = OutputChunks;

    async fn read_output(
        &self,
        request: Request<ReadOutputRequest>,
    ) -> Result<Response<Self::ReadOutputStream>, Status> {
        let request = request.get_ref();
        let output = match request.stream() {
            OutputStream::Stdout => Output::Stdout,
            OutputStream::Stderr => Output::Stderr,
            OutputStream::Unspecified => {
                return Err(Status::invalid_argument(
                    "ReadOutput needs stream STDOUT or STDERR",
                ))
            }
        };
        let receiver = self
            .containers
            .process(&request.container_id, &request.exec_id)?
            .take_output(output)?;
        let chunks = ReceiverStream::new(receiver).map(output_chunk);
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn resize_pty(
        &self,
        request: Request<ResizePtyRequest>,
    ) -> Result<Response<ResizePtyResponse>, Status> {
        let request = request.get_ref();
        let (Ok(rows), Ok(columns)) = (u16::try_from(request.rows), u16::try_from(request.columns))
        else {
            return Err(Status::invalid_argument(format!(
                "window size {}x{} does not fit a terminal (at most 65535 each)",
                request.rows, request.columns
            )));
        };
        self.containers
            .process(&request.container_id, &request.exec_id)?
            .resize(rows, columns)?;
        Ok(Response::new(ResizePtyResponse {}))
    }

    async fn update_container(
        &self,
        request: Request<UpdateContainerRequest>,
    ) -> Result<Response<UpdateContainerResponse>, Status> {
        let request = request.get_ref();
        let limits = wire_spec::limits(request)?;
        self.containers.update(&request.container_id, &limits)?;
        tracing::info!(container = %request.container_id, ?limits, "limits changed");
        Ok(Response::new(UpdateContainerResponse {}))
    }

    type OomEventsStream = Pin<Box<dyn Stream<Item = Result<OomEvent, Status>> + Send>>;

    async fn oom_events(
        &self,
        _request: Request<OomEventsRequest>,
    ) -> Result<Response<Self::OomEventsStream>, Status> {
        let receiver = self.containers.oom_events().ok_or_else(|| {
            Status::unavailable("this zone cannot watch its cgroups for OOM kills")
        })?;
        // A subscriber that fell behind misses the oldest events, not the stream.
        let events = BroadcastStream::new(receiver).filter_map(|id| id.ok().map(oom_event));
        Ok(Response::new(Box::pin(events)))
    }

    async fn list_processes(
        &self,
        request: Request<ListProcessesRequest>,
    ) -> Result<Response<ListProcessesResponse>, Status> {
        let pids = self.containers.pids(&request.get_ref().container_id)?;
        Ok(Response::new(ListProcessesResponse { pids }))
    }

    async fn container_stats(
        &self,
        request: Request<ContainerStatsRequest>,
    ) -> Result<Response<ContainerStatsResponse>, Status> {
        let stats = self.containers.stats(&request.get_ref().container_id)?;
        let memory = stats.memory.unwrap_or_default();
        Ok(Response::new(ContainerStatsResponse {
            cpu_usage_usec: stats.cpu.usage_usec,
            cpu_user_usec: stats.cpu.user_usec,
            cpu_system_usec: stats.cpu.system_usec,
            memory_current_bytes: memory.current,
            memory_limit_bytes: memory.max.unwrap_or(0),
            memory_anon_bytes: memory.anon,
            memory_file_bytes: memory.file,
            pids_current: stats.pids.map_or(0, |pids| pids.current),
        }))
    }

    async fn remove_container(
        &self,
        request: Request<RemoveContainerRequest>,
    ) -> Result<Response<RemoveContainerResponse>, Status> {
        self.containers
            .remove(&request.get_ref().container_id)
            .await?;
        Ok(Response::new(RemoveContainerResponse {}))
    }

    async fn info(&self, _request: Request<InfoRequest>) -> Result<Response<AgentReady>, Status> {
        Ok(Response::new(sysinfo::agent_ready()))
    }

    async fn shutdown(
        &self,
        request: Request<ShutdownRequest>,
    ) -> Result<Response<ShutdownResponse>, Status> {
        let action = match request.get_ref().action() {
            Action::PowerOff => PowerAction::PowerOff,
            Action::Reboot => PowerAction::Reboot,
            Action::Unspecified => {
                return Err(Status::invalid_argument(
                    "Shutdown needs action POWER_OFF or REBOOT",
                ))
            }
        };
        tracing::info!(?action, "shutdown requested");
        self.shutdown.send_replace(Some(action));
        Ok(Response::new(ShutdownResponse {}))
    }

    async fn configure_network(
        &self,
        request: Request<ConfigureNetworkRequest>,
    ) -> Result<Response<ConfigureNetworkResponse>, Status> {
        let resolv_conf = self
            .network
            .configure(request.get_ref())
            .await
            .map_err(RequestError::from)?;
        if let Some(path) = resolv_conf {
            self.containers.use_resolv_conf(path);
        }
        Ok(Response::new(ConfigureNetworkResponse {}))
    }

    async fn tpm_keys(
        &self,
        _request: Request<TpmKeysRequest>,
    ) -> Result<Response<TpmKeysResponse>, Status> {
        let (ek, ak) = self.tpm.keys().await?;
        Ok(Response::new(TpmKeysResponse {
            ek_public: ek.to_tpm2b(),
            ak_public: ak.to_tpm2b(),
        }))
    }

    async fn activate_credential(
        &self,
        request: Request<ActivateCredentialRequest>,
    ) -> Result<Response<ActivateCredentialResponse>, Status> {
        let request = request.into_inner();
        let challenge = CredentialChallenge {
            credential_blob: request.credential_blob,
            encrypted_secret: request.encrypted_secret,
        };
        let secret = self.tpm.activate_credential(challenge).await?;
        Ok(Response::new(ActivateCredentialResponse { secret }))
    }

    async fn quote(
        &self,
        request: Request<QuoteRequest>,
    ) -> Result<Response<QuoteResponse>, Status> {
        let request = request.into_inner();
        let (quote, event_log) = self.tpm.quote(request.nonce, request.pcrs).await?;
        let (pcr_indices, pcr_values) = quote
            .pcrs
            .iter()
            .map(|(index, value)| (*index, value.to_vec()))
            .unzip();
        Ok(Response::new(QuoteResponse {
            attest: quote.attest,
            signature: quote.signature,
            pcr_indices,
            pcr_values,
            event_log,
        }))
    }

    async fn new_identity_key(
        &self,
        _request: Request<NewIdentityKeyRequest>,
    ) -> Result<Response<NewIdentityKeyResponse>, Status> {
        Ok(Response::new(self.identity.new_key()))
    }

    async fn set_identity(
        &self,
        request: Request<SetIdentityRequest>,
    ) -> Result<Response<SetIdentityResponse>, Status> {
        Ok(Response::new(self.identity.set(request.into_inner())?))
    }

    type JwtSignerStream = Pin<Box<dyn Stream<Item = Result<JwtSignerAsk, Status>> + Send>>;

    async fn jwt_signer(
        &self,
        request: Request<Streaming<JwtSignerAnswer>>,
    ) -> Result<Response<Self::JwtSignerStream>, Status> {
        let asks = self.identity.connect_signer(request.into_inner());
        Ok(Response::new(Box::pin(asks)))
    }
}

// tonic fixes the stream's item type; its Status is large by design.
#[allow(clippy::result_large_err)]
fn oom_event(container_id: String) -> Result<OomEvent, Status> {
    Ok(OomEvent { container_id })
}

// As above.
#[allow(clippy::result_large_err)]
fn output_chunk(data: Vec<u8>) -> Result<OutputChunk, Status> {
    Ok(OutputChunk { data })
}
