//! The `zone.agent.v1` service on the host: the real server and tonic client over a Unix
//! socket instead of vsock, running commands in the host's userland (bare containers).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;
use zone_agent::containers::Containers;
use zone_agent::network::Network;
use zone_agent::power::PowerAction;
use zone_agent::reaper::Reaper;
use zone_agent::server;
use zone_proto::agent::v1::agent_client::AgentClient;
use zone_proto::agent::v1::shutdown_request::Action;
use zone_proto::agent::v1::{
    ConfigureNetworkRequest, CreateContainerRequest, Dns, ExecProcessRequest, ListProcessesRequest,
    NetworkInterface, NetworkRoute, OomEventsRequest, OutputStream, ProcessSpec, ReadOutputRequest,
    RemoveContainerRequest, ResizePtyRequest, Rlimit, ShutdownRequest, SignalProcessRequest,
    StartProcessRequest, UpdateContainerRequest, WaitProcessRequest, WaitProcessResponse,
    WriteStdinRequest,
};

type Client = AgentClient<Channel>;

struct Agent {
    _dir: tempfile::TempDir,
    socket: std::path::PathBuf,
    served: tokio::task::JoinHandle<Result<PowerAction, tonic::transport::Error>>,
}

fn start_agent() -> Agent {
    let dir = tempfile::tempdir().expect("agent test setup");
    let socket = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&socket).expect("agent test setup");
    let containers = Arc::new(Containers::new(Arc::new(Reaper::per_child())));
    let (shutdown, _) = watch::channel(None);
    let served = tokio::spawn(server::serve(
        containers,
        UnixListenerStream::new(listener),
        shutdown,
    ));
    Agent {
        _dir: dir,
        socket,
        served,
    }
}

async fn connect(socket: &Path) -> Client {
    let socket = socket.to_path_buf();
    let channel = Endpoint::from_static("http://agent")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await
        .expect("agent test setup");
    AgentClient::new(channel)
}

fn process(args: &[&str]) -> ProcessSpec {
    ProcessSpec {
        args: args.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    }
}

fn create(id: &str, process: ProcessSpec) -> CreateContainerRequest {
    CreateContainerRequest {
        container_id: id.to_string(),
        process: Some(process),
        ..Default::default()
    }
}

/// Reads a whole output stream of a process.
async fn read_all(
    client: &mut Client,
    container: &str,
    exec: &str,
    stream: OutputStream,
) -> Vec<u8> {
    let mut chunks = client
        .read_output(ReadOutputRequest {
            container_id: container.into(),
            exec_id: exec.into(),
            stream: stream as i32,
        })
        .await
        .expect("agent test setup")
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = chunks.message().await.expect("agent test setup") {
        out.extend(chunk.data);
    }
    out
}

async fn wait(client: &mut Client, container: &str, exec: &str) -> WaitProcessResponse {
    client
        .wait_process(WaitProcessRequest {
            container_id: container.into(),
            exec_id: exec.into(),
        })
        .await
        .expect("agent test setup")
        .into_inner()
}

async fn start(client: &mut Client, container: &str, exec: &str) -> Result<u32, tonic::Status> {
    client
        .start_process(StartProcessRequest {
            container_id: container.into(),
            exec_id: exec.into(),
        })
        .await
        .map(|r| r.into_inner().pid)
}

#[tokio::test]
async fn test_separate_streams_stdin_and_exit_code() {
    let agent = start_agent();
    let mut client = connect(&agent.socket).await;
    let mut spec = process(&[
        "sh",
        "-c",
        "echo out; echo err >&2; read x; echo got-$x; exit 7",
    ]);
    spec.stdin = true;
    client.create_container(create("c1", spec)).await.unwrap();
    let stdout = tokio::spawn({
        let mut client = client.clone();
        async move { read_all(&mut client, "c1", "", OutputStream::Stdout).await }
    });
    let stderr = tokio::spawn({
        let mut client = client.clone();
        async move { read_all(&mut client, "c1", "", OutputStream::Stderr).await }
    });

    let pid = start(&mut client, "c1", "").await.unwrap();
    let written = client
        .write_stdin(tokio_stream::iter([WriteStdinRequest {
            container_id: "c1".into(),
            exec_id: String::new(),
            data: b"abc\n".to_vec(),
            close: true,
        }]))
        .await
        .unwrap()
        .into_inner();
    let exit = wait(&mut client, "c1", "").await;

    assert!(pid > 1);
    assert_eq!(written.bytes_written, 4);
    assert_eq!(exit.exit_code, 7, "{exit:?}");
    assert_eq!(exit.signal, 0);
    assert!(exit.exited_at_unix_nanos > 0);
    assert_eq!(stdout.await.unwrap(), b"out\ngot-abc\n");
    assert_eq!(stderr.await.unwrap(), b"err\n");
}

#[tokio::test]
async fn test_terminal_resize_seen_by_process() {
    let agent = start_agent();
    let mut client = connect(&agent.socket).await;
    let mut spec = process(&[
        "sh",
        "-c",
        "tty >/dev/null && echo is-tty; read x; stty size",
    ]);
    spec.terminal = true;
    client.create_container(create("t", spec)).await.unwrap();
    let output = tokio::spawn({
        let mut client = client.clone();
        async move { read_all(&mut client, "t", "", OutputStream::Stdout).await }
    });

    start(&mut client, "t", "").await.unwrap();
    client
        .resize_pty(ResizePtyRequest {
            container_id: "t".into(),
            exec_id: String::new(),
            rows: 21,
            columns: 77,
        })
        .await
        .unwrap();
    client
        .write_stdin(tokio_stream::iter([WriteStdinRequest {
            container_id: "t".into(),
            data: b"go\n".to_vec(),
            ..Default::default()
        }]))
        .await
        .unwrap();
    let exit = wait(&mut client, "t", "").await;
    let stderr = read_all(&mut client, "t", "", OutputStream::Stderr).await;

    let text = String::from_utf8_lossy(&output.await.unwrap()).into_owned();
    assert_eq!(exit.exit_code, 0);
    assert!(text.contains("is-tty\r\n"), "{text:?}");
    assert!(text.contains("21 77\r\n"), "{text:?}");
    assert!(stderr.is_empty(), "a terminal has no separate stderr");
    let huge = client
        .resize_pty(ResizePtyRequest {
            container_id: "t".into(),
            rows: 70000,
            columns: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(huge.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn test_exec_list_signal_and_remove() {
    let agent = start_agent();
    let mut client = connect(&agent.socket).await;
    client
        .create_container(create("svc", process(&["sleep", "100"])))
        .await
        .unwrap();
    let early = client
        .exec_process(ExecProcessRequest {
            container_id: "svc".into(),
            exec_id: "e1".into(),
            process: Some(process(&["true"])),
        })
        .await
        .unwrap_err();
    assert_eq!(
        early.code(),
        Code::Unavailable,
        "not started yet: retry\n{early}"
    );
    let early_signal = client
        .signal_process(SignalProcessRequest {
            container_id: "svc".into(),
            signal: 15,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(early_signal.code(), Code::Unavailable, "{early_signal}");
    let main_pid = start(&mut client, "svc", "").await.unwrap();

    client
        .exec_process(ExecProcessRequest {
            container_id: "svc".into(),
            exec_id: "e1".into(),
            process: Some(process(&["sh", "-c", "echo from-exec"])),
        })
        .await
        .unwrap();
    let exec_out = tokio::spawn({
        let mut client = client.clone();
        async move { read_all(&mut client, "svc", "e1", OutputStream::Stdout).await }
    });
    start(&mut client, "svc", "e1").await.unwrap();
    assert_eq!(wait(&mut client, "svc", "e1").await.exit_code, 0);
    assert_eq!(exec_out.await.unwrap(), b"from-exec\n");
    let pids = client
        .list_processes(ListProcessesRequest {
            container_id: "svc".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .pids;
    assert_eq!(pids, [main_pid]);

    client
        .signal_process(SignalProcessRequest {
            container_id: "svc".into(),
            exec_id: String::new(),
            signal: 15,
            all: false,
        })
        .await
        .unwrap();
    let exit = wait(&mut client, "svc", "").await;
    assert_eq!((exit.exit_code, exit.signal), (0, 15));
    let again = client
        .signal_process(SignalProcessRequest {
            container_id: "svc".into(),
            signal: 15,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    let late = client
        .exec_process(ExecProcessRequest {
            container_id: "svc".into(),
            exec_id: "e2".into(),
            process: Some(process(&["true"])),
        })
        .await
        .unwrap_err();
    assert_eq!(
        late.code(),
        Code::FailedPrecondition,
        "exited: no retry\n{late}"
    );

    client
        .remove_container(RemoveContainerRequest {
            container_id: "svc".into(),
        })
        .await
        .unwrap();
    let gone = client
        .list_processes(ListProcessesRequest {
            container_id: "svc".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test]
async fn test_remove_kills_running_processes() {
    let agent = start_agent();
    let mut client = connect(&agent.socket).await;
    client
        .create_container(create("k", process(&["sleep", "100"])))
        .await
        .unwrap();
    let pid = start(&mut client, "k", "").await.unwrap();

    client
        .remove_container(RemoveContainerRequest {
            container_id: "k".into(),
        })
        .await
        .unwrap();

    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} lives on"
    );
}

#[tokio::test]
async fn test_output_waits_for_a_late_reader_without_loss() {
    let agent = start_agent();
    let mut client = connect(&agent.socket).await;
    client
        .create_container(create(
            "big",
            process(&["head", "-c", "5000000", "/dev/zero"]),
        ))
        .await
        .unwrap();
    start(&mut client, "big", "").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let out = read_all(&mut client, "big", "", OutputStream::Stdout).await;

    assert_eq!(out.len(), 5_000_000);
    assert_eq!(wait(&mut client, "big", "").await.exit_code, 0);
}

#[tokio::test]
async fn test_bad_requests_refused_and_agent_goes_on() {
    let agent = start_agent();
    let mut client = connect(&agent.socket).await;

    let bad_id = client
        .create_container(create("../x", process(&["true"])))
        .await
        .unwrap_err();
    assert_eq!(bad_id.code(), Code::InvalidArgument);
    assert!(bad_id.message().contains("../x"), "{bad_id}");
    let no_process = client
        .create_container(CreateContainerRequest {
            container_id: "p".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(no_process.code(), Code::InvalidArgument);
    let empty_args = client
        .create_container(create("p", process(&[])))
        .await
        .unwrap_err();
    assert!(empty_args.message().contains("args"), "{empty_args}");
    let mut bad_env = process(&["true"]);
    bad_env.env = vec!["NOEQUALS".into()];
    let bad_env = client
        .create_container(create("p", bad_env))
        .await
        .unwrap_err();
    assert!(bad_env.message().contains("NOEQUALS"), "{bad_env}");
    let mut rlimits = process(&["true"]);
    rlimits.rlimits = vec![Rlimit {
        r#type: "RLIMIT_NOFILE".into(),
        soft: 10,
        hard: 10,
    }];
    let unsupported = client
        .create_container(create("p", rlimits))
        .await
        .unwrap_err();
    assert!(unsupported.message().contains("rlimits"), "{unsupported}");
    let unknown = start(&mut client, "nope", "").await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    client
        .create_container(create("p", process(&["no-such-command-anywhere"])))
        .await
        .unwrap();
    let twice = client
        .create_container(create("p", process(&["true"])))
        .await
        .unwrap_err();
    assert_eq!(twice.code(), Code::AlreadyExists);
    let _first_reader = client
        .read_output(ReadOutputRequest {
            container_id: "p".into(),
            exec_id: String::new(),
            stream: OutputStream::Stderr as i32,
        })
        .await
        .unwrap();
    let second_reader = client
        .read_output(ReadOutputRequest {
            container_id: "p".into(),
            exec_id: String::new(),
            stream: OutputStream::Stderr as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(second_reader.code(), Code::FailedPrecondition);
    let not_found = start(&mut client, "p", "").await.unwrap_err();
    assert!(
        not_found.message().contains("command not found"),
        "{not_found}"
    );
    let exit = wait(&mut client, "p", "").await;
    assert_eq!(exit.exit_code, 127);
    assert!(exit.error.contains("no-such-command-anywhere"), "{exit:?}");
    let started_twice = start(&mut client, "p", "").await.unwrap_err();
    assert_eq!(started_twice.code(), Code::FailedPrecondition);

    // Garbage on a connection of its own harms nothing.
    let mut raw = UnixStream::connect(&agent.socket).await.unwrap();
    raw.write_all(b"this is not HTTP/2 at all\r\n\r\n")
        .await
        .unwrap();
    drop(raw);
    client
        .create_container(create("after", process(&["true"])))
        .await
        .unwrap();
    start(&mut client, "after", "").await.unwrap();
    assert_eq!(wait(&mut client, "after", "").await.exit_code, 0);
}

#[tokio::test]
async fn test_update_refused_for_bad_limits_unknown_or_cgroupless_container() {
    let agent = start_agent();
    let mut client = connect(&agent.socket).await;
    client
        .create_container(create("bare", process(&["sleep", "100"])))
        .await
        .expect("create");
    let update = |id: &str, memory: Option<u64>| UpdateContainerRequest {
        container_id: id.into(),
        memory_limit_bytes: memory,
        ..Default::default()
    };

    let zero = client
        .update_container(update("bare", Some(0)))
        .await
        .unwrap_err();
    let unknown = client
        .update_container(update("nobody", Some(1 << 30)))
        .await
        .unwrap_err();
    let bare = client
        .update_container(update("bare", Some(1 << 30)))
        .await
        .unwrap_err();
    let mut half_cpu = update("bare", None);
    half_cpu.cpu_period_us = Some(100_000);
    let half_cpu = client.update_container(half_cpu).await.unwrap_err();

    assert_eq!(zero.code(), Code::InvalidArgument);
    assert!(zero.message().contains("memory_limit_bytes 0"), "{zero}");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown}");
    // A container in the zone's own userland has no cgroup to limit.
    assert_eq!(bare.code(), Code::FailedPrecondition, "{bare}");
    assert_eq!(half_cpu.code(), Code::InvalidArgument);
    assert!(half_cpu.message().contains("go together"), "{half_cpu}");
    // The OOM event stream opens; nothing is killed here, so it stays quiet.
    let mut events = client
        .oom_events(OomEventsRequest {})
        .await
        .expect("OomEvents")
        .into_inner();
    let quiet = tokio::time::timeout(Duration::from_millis(200), events.message()).await;
    assert!(quiet.is_err(), "an OOM event without a kill: {quiet:?}");
    client
        .remove_container(RemoveContainerRequest {
            container_id: "bare".into(),
        })
        .await
        .expect("remove");
}

#[tokio::test]
async fn test_shutdown_ends_serving_with_the_action() {
    let agent = start_agent();
    let mut client = connect(&agent.socket).await;

    let unspecified = client
        .shutdown(ShutdownRequest { action: 0 })
        .await
        .unwrap_err();
    assert_eq!(unspecified.code(), Code::InvalidArgument);
    client
        .shutdown(ShutdownRequest {
            action: Action::Reboot as i32,
        })
        .await
        .unwrap();
    drop(client);

    let action = tokio::time::timeout(Duration::from_secs(10), agent.served)
        .await
        .expect("serving ended")
        .unwrap()
        .unwrap();
    assert_eq!(action, PowerAction::Reboot);
}

/// A request as the host sends it for a CNI pod with one veth of MAC `mac`.
fn network_request(mac: &str) -> ConfigureNetworkRequest {
    ConfigureNetworkRequest {
        interfaces: vec![NetworkInterface {
            mac: mac.into(),
            name: "eth0".into(),
            mtu: 1450,
            addresses: vec!["10.88.0.5/16".into()],
        }],
        routes: vec![NetworkRoute {
            destination: "0.0.0.0/0".into(),
            gateway: "10.88.0.1".into(),
            ..Default::default()
        }],
        dns: Some(Dns {
            nameservers: vec!["10.96.0.10".into()],
            ..Default::default()
        }),
    }
}

/// ConfigureNetwork over gRPC, served and applied in a network namespace of the test's own
/// thread (a current-thread runtime keeps the server and its netlink socket there), so the
/// host's network is never touched.
#[test]
fn test_configure_network_codes_and_messages_over_grpc() {
    const MAC: &str = "02:42:0a:58:00:07";
    let thread = std::thread::spawn(|| {
        assert!(
            nix::unistd::geteuid().is_root(),
            "ConfigureNetwork's test needs root (a network namespace): run it as root, as CI does"
        );
        // SAFETY: unshare with a flag; it changes only this thread's network namespace,
        // and this thread belongs to the test.
        let unshared = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(unshared, 0, "unshare: {}", std::io::Error::last_os_error());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("test runtime");
        runtime.block_on(async {
            let dir = tempfile::tempdir().expect("agent test setup");
            let socket = dir.path().join("agent.sock");
            let listener = UnixListener::bind(&socket).expect("agent test setup");
            let resolv_conf = dir.path().join("run/zone/resolv.conf");
            let network =
                Network::new(resolv_conf.clone()).with_link_wait(Duration::from_millis(200));
            let containers = Arc::new(Containers::new(Arc::new(Reaper::per_child())));
            let (shutdown, _) = watch::channel(None);
            tokio::spawn(server::serve_with_network(
                containers,
                Arc::new(network),
                UnixListenerStream::new(listener),
                shutdown,
            ));
            let mut client = connect(&socket).await;

            let mut bad_mac = network_request(MAC);
            bad_mac.interfaces[0].mac = "nope".into();
            let bad_mac = client.configure_network(bad_mac).await.unwrap_err();
            let mut bad_gateway = network_request(MAC);
            bad_gateway.routes[0].gateway = "fd00::1".into();
            let bad_gateway = client.configure_network(bad_gateway).await.unwrap_err();
            let missing = client
                .configure_network(network_request(MAC))
                .await
                .unwrap_err();
            let made = std::process::Command::new("ip")
                .args(["link", "add", "virt0", "address", MAC, "type", "veth"])
                .args(["peer", "name", "host0"])
                .status()
                .expect("running ip (install iproute2)");
            assert!(made.success(), "ip link add: {made}");
            client
                .configure_network(network_request(MAC))
                .await
                .expect("configured");
            let again = client
                .configure_network(network_request(MAC))
                .await
                .unwrap_err();

            assert_eq!(bad_mac.code(), Code::InvalidArgument);
            assert!(
                bad_mac.message().contains("interfaces[0].mac \"nope\""),
                "{bad_mac}"
            );
            assert_eq!(bad_gateway.code(), Code::InvalidArgument);
            assert!(
                bad_gateway
                    .message()
                    .contains("routes[0].gateway \"fd00::1\""),
                "{bad_gateway}"
            );
            assert_eq!(missing.code(), Code::NotFound);
            assert!(missing.message().contains(MAC), "{missing}");
            assert_eq!(again.code(), Code::FailedPrecondition);
            assert_eq!(again.message(), "network already configured");
            let text = std::fs::read_to_string(&resolv_conf).expect("resolv.conf written");
            assert!(text.contains("nameserver 10.96.0.10\n"), "{text}");
        });
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}
