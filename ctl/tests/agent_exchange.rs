//! The host <-> agent exchange without a VM: zonectl's `AgentConn` against the agent's real
//! request loop, over a Unix socket pair.

use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Duration;

use zone_agent::reaper::DirectWaiter;
use zone_agent::session::{self, SessionEnd};
use zone_proto::agent::v1::shutdown_request::Action;
use zone_proto::agent::v1::{AgentReady, RunCommandRequest};
use zonectl::agent_conn::AgentConn;

fn start_agent(stream: UnixStream) -> thread::JoinHandle<SessionEnd> {
    thread::spawn(move || {
        let mut writer = stream.try_clone().expect("clone");
        let ready = AgentReady {
            agent_version: "test".into(),
            kernel_release: "6.12".into(),
            online_cpus: 2,
        };
        session::send_ready(&mut writer, &ready).expect("send ready");
        session::serve(&mut BufReader::new(stream), &mut writer, &DirectWaiter).expect("serve")
    })
}

fn run_request(args: &[&str]) -> RunCommandRequest {
    RunCommandRequest {
        args: args.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    }
}

#[test]
fn test_exchange_ready_run_shutdown_full_flow() {
    let (host, agent) = UnixStream::pair().unwrap();
    let agent = start_agent(agent);
    let mut conn = AgentConn::from_stream(host).unwrap();

    let ready = conn.read_ready(Duration::from_secs(5)).unwrap();
    let first = conn
        .run(run_request(&["sh", "-c", "echo out; echo err >&2; exit 7"]))
        .unwrap();
    let mut second = run_request(&["sh", "-c", "tr a-z A-Z; echo \"$NAME\""]);
    second.stdin = b"zone\n".to_vec();
    second.env = vec!["NAME=agent".into()];
    let second = conn.run(second).unwrap();
    let missing = conn
        .run(run_request(&["no-such-command-anywhere"]))
        .unwrap();
    conn.shutdown(Action::PowerOff).unwrap();

    assert_eq!(
        (ready.kernel_release.as_str(), ready.online_cpus),
        ("6.12", 2)
    );
    assert_eq!(
        (
            first.stdout.as_slice(),
            first.stderr.as_slice(),
            first.exit_code
        ),
        (&b"out\n"[..], &b"err\n"[..], 7)
    );
    assert_eq!(second.stdout, b"ZONE\nagent\n");
    assert_eq!(missing.exit_code, 127);
    assert_eq!(
        agent.join().unwrap(),
        SessionEnd::Shutdown(Action::PowerOff)
    );
}

#[test]
fn test_exchange_large_output_one_frame_each_way() {
    let (host, agent) = UnixStream::pair().unwrap();
    let agent = start_agent(agent);
    let mut conn = AgentConn::from_stream(host).unwrap();
    conn.read_ready(Duration::from_secs(5)).unwrap();
    let mut request = run_request(&["sh", "-c", "cat; head -c 5000000 /dev/zero >&2"]);
    request.stdin = vec![b'x'; 5_000_000];

    let response = conn.run(request).unwrap();
    drop(conn);

    assert_eq!(response.stdout.len(), 5_000_000);
    assert_eq!(response.stderr.len(), 5_000_000);
    assert_eq!(agent.join().unwrap(), SessionEnd::Closed);
}
