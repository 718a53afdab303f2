//! Signal requests against the agent's real session loop. In a test binary of its own: the
//! main command is process-wide state, and unit tests running commands in parallel would race.

use std::thread;
use std::time::Duration;

use zone_agent::reaper::DirectWaiter;
use zone_agent::runner::run_command;
use zone_agent::session::{serve, SessionEnd};
use zone_proto::agent::v1::{
    agent_request, AgentRequest, RunCommandRequest, SignalRequest, SignalResponse,
};
use zone_proto::frame::{read_frame, write_frame};

fn signal_frames(signals: &[i32]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for &signal in signals {
        let request = AgentRequest {
            kind: Some(agent_request::Kind::Signal(SignalRequest { signal })),
        };
        write_frame(&mut bytes, &request).expect("encode");
    }
    bytes
}

fn signal_responses(signals: &[i32]) -> Vec<SignalResponse> {
    let input = signal_frames(signals);
    let mut output = Vec::new();
    let end = serve(&mut input.as_slice(), &mut output, &DirectWaiter).expect("serve");
    assert_eq!(end, SessionEnd::Closed);
    let mut bytes = output.as_slice();
    std::iter::from_fn(|| read_frame(&mut bytes).expect("decode")).collect()
}

#[test]
fn test_signal_requests_reach_the_main_command_only_when_one_runs() {
    // Nothing runs yet: the host is told so, and may retry.
    let before = signal_responses(&[15, 0]);
    assert!(
        before[0].no_command && !before[0].error.is_empty(),
        "{before:?}"
    );
    assert!(
        !before[1].no_command && before[1].error.contains("not a signal"),
        "{before:?}"
    );

    // A main command runs: SIGTERM ends it, and the run reports the signal.
    let main = thread::spawn(|| {
        let request = RunCommandRequest {
            args: vec!["sleep".into(), "30".into()],
            ..Default::default()
        };
        run_command(&request, &DirectWaiter)
    });
    let mut sent = false;
    for _ in 0..100 {
        let response = &signal_responses(&[15])[0];
        if response.error.is_empty() {
            sent = true;
            break;
        }
        assert!(response.no_command, "{response:?}");
        thread::sleep(Duration::from_millis(50));
    }
    assert!(sent, "the main command never became signalable");
    let result = main.join().expect("main command thread");
    assert_eq!(result.signal, 15, "{result:?}");
}
