//! The agent's side of the host connection (`zone.agent.v1`, see `agent.proto`).
//!
//! After [`send_ready`], [`serve`] answers `AgentRequest` frames until the host asks for a
//! shutdown or closes the connection. A request the agent cannot use (undecodable, oversized,
//! empty) gets a `RunCommandResponse` carrying an error, and the session goes on.

use std::io::{self, Read, Write};

use zone_proto::agent::v1::shutdown_request::Action;
use zone_proto::agent::v1::{
    agent_request, AgentReady, AgentRequest, RunCommandResponse, SignalResponse,
};
use zone_proto::frame::{read_frame, write_frame, FrameError};

use crate::reaper::ChildWaiter;
use crate::runner::{run_command, signal_main, SignalMainError, EXIT_CANNOT_RUN};

/// Why a session ended normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The host sent a `ShutdownRequest`.
    Shutdown(Action),
    /// The host closed the connection.
    Closed,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("sending AgentReady")]
    SendReady(#[source] FrameError),
    #[error("reading a request")]
    ReadRequest(#[source] FrameError),
    #[error("skipping an oversized request")]
    SkipRequest(#[source] io::Error),
    #[error("sending a response")]
    SendResponse(#[source] FrameError),
}

/// Sends the first message of the connection.
pub fn send_ready(writer: &mut impl Write, ready: &AgentReady) -> Result<(), SessionError> {
    write_frame(writer, ready).map_err(SessionError::SendReady)
}

/// Answers requests until a shutdown request or the end of the stream.
pub fn serve(
    reader: &mut impl Read,
    writer: &mut impl Write,
    waiter: &dyn ChildWaiter,
) -> Result<SessionEnd, SessionError> {
    loop {
        let response = match read_frame::<AgentRequest>(reader) {
            Ok(None) => return Ok(SessionEnd::Closed),
            Ok(Some(AgentRequest {
                kind: Some(agent_request::Kind::Run(run)),
            })) => run_command(&run, waiter),
            Ok(Some(AgentRequest {
                kind: Some(agent_request::Kind::Shutdown(shutdown)),
            })) => {
                return Ok(SessionEnd::Shutdown(shutdown.action()));
            }
            Ok(Some(AgentRequest {
                kind: Some(agent_request::Kind::Signal(request)),
            })) => {
                let response = match signal_main(request.signal) {
                    Ok(()) => SignalResponse::default(),
                    Err(SignalMainError::NoCommand) => SignalResponse {
                        error: "no command runs in the zone yet".to_string(),
                        no_command: true,
                    },
                    Err(SignalMainError::Failed(error)) => SignalResponse {
                        error,
                        no_command: false,
                    },
                };
                write_frame(writer, &response).map_err(SessionError::SendResponse)?;
                continue;
            }
            Ok(Some(AgentRequest { kind: None })) => bad_request("request has no kind"),
            Err(FrameError::Decode(e)) => bad_request(&format!("undecodable request: {e}")),
            Err(FrameError::TooLarge { len, max }) => {
                skip(reader, len)?;
                bad_request(&format!(
                    "request of {len} bytes exceeds the {max} byte limit"
                ))
            }
            Err(e) => return Err(SessionError::ReadRequest(e)),
        };
        write_frame(writer, &response).map_err(SessionError::SendResponse)?;
    }
}

/// Discards the payload of a frame that was not read, keeping the stream in step.
fn skip(reader: &mut impl Read, len: u64) -> Result<(), SessionError> {
    let skipped =
        io::copy(&mut reader.take(len), &mut io::sink()).map_err(SessionError::SkipRequest)?;
    if skipped < len {
        return Err(SessionError::ReadRequest(FrameError::Truncated));
    }
    Ok(())
}

fn bad_request(reason: &str) -> RunCommandResponse {
    tracing::warn!(reason, "bad request");
    RunCommandResponse {
        exit_code: EXIT_CANNOT_RUN,
        error: format!("bad request: {reason}"),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reaper::DirectWaiter;
    use zone_proto::agent::v1::{RunCommandRequest, ShutdownRequest};
    use zone_proto::frame::MAX_FRAME_LEN;

    fn run(args: &[&str]) -> AgentRequest {
        AgentRequest {
            kind: Some(agent_request::Kind::Run(RunCommandRequest {
                args: args.iter().map(|a| a.to_string()).collect(),
                ..Default::default()
            })),
        }
    }

    fn shutdown(action: Action) -> AgentRequest {
        AgentRequest {
            kind: Some(agent_request::Kind::Shutdown(ShutdownRequest {
                action: action as i32,
            })),
        }
    }

    fn frames(requests: &[AgentRequest]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for request in requests {
            write_frame(&mut bytes, request).unwrap();
        }
        bytes
    }

    fn responses(mut bytes: &[u8]) -> Vec<RunCommandResponse> {
        let mut out = Vec::new();
        while let Some(response) = read_frame(&mut bytes).unwrap() {
            out.push(response);
        }
        out
    }

    #[test]
    fn test_serve_run_then_shutdown_reboot() {
        let input = frames(&[
            run(&["sh", "-c", "echo hi"]),
            shutdown(Action::Reboot),
            run(&["true"]),
        ]);
        let mut output = Vec::new();

        let end = serve(&mut input.as_slice(), &mut output, &DirectWaiter).unwrap();

        assert_eq!(end, SessionEnd::Shutdown(Action::Reboot));
        let got = responses(&output);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].stdout, b"hi\n");
    }

    #[test]
    fn test_serve_end_of_stream_closed() {
        let input = frames(&[run(&["true"])]);
        let mut output = Vec::new();

        let end = serve(&mut input.as_slice(), &mut output, &DirectWaiter).unwrap();

        assert_eq!(end, SessionEnd::Closed);
        assert_eq!(responses(&output).len(), 1);
    }

    #[test]
    fn test_serve_garbage_and_empty_requests_answered_with_errors() {
        let mut input = vec![2u8, 0xff, 0xff];
        input.extend(frames(&[
            AgentRequest { kind: None },
            run(&["sh", "-c", "exit 4"]),
        ]));
        let mut output = Vec::new();

        let end = serve(&mut input.as_slice(), &mut output, &DirectWaiter).unwrap();

        let got = responses(&output);
        assert_eq!(end, SessionEnd::Closed);
        assert_eq!(got.len(), 3);
        assert!(got[0].error.contains("undecodable"), "{}", got[0].error);
        assert!(got[1].error.contains("no kind"), "{}", got[1].error);
        assert_eq!(got[2].exit_code, 4);
    }

    #[test]
    fn test_serve_oversized_request_skipped_and_session_continues() {
        let len = MAX_FRAME_LEN + 5;
        let mut input = Vec::new();
        prost::encoding::encode_varint(len, &mut input);
        input.resize(input.len() + len as usize, 0xaa);
        input.extend(frames(&[run(&["true"])]));
        let mut output = Vec::new();

        let end = serve(&mut input.as_slice(), &mut output, &DirectWaiter).unwrap();

        let got = responses(&output);
        assert_eq!(end, SessionEnd::Closed);
        assert_eq!(got.len(), 2);
        assert!(got[0].error.contains("exceeds"), "{}", got[0].error);
        assert_eq!(got[1].error, "");
    }

    #[test]
    fn test_serve_bad_rootfs_request_answered_and_session_continues() {
        let mut bad = RunCommandRequest {
            args: vec!["true".into()],
            ..Default::default()
        };
        bad.rootfs = Some(zone_proto::agent::v1::ContainerRootfs {
            device: "/dev/null".into(),
            fstype: "ext4".into(),
        });
        let input = frames(&[
            AgentRequest {
                kind: Some(agent_request::Kind::Run(bad)),
            },
            run(&["sh", "-c", "echo still-here"]),
        ]);
        let mut output = Vec::new();

        let end = serve(&mut input.as_slice(), &mut output, &DirectWaiter).unwrap();

        let got = responses(&output);
        assert_eq!(end, SessionEnd::Closed);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].exit_code, EXIT_CANNOT_RUN);
        assert!(
            got[0].error.contains("not a block device"),
            "{}",
            got[0].error
        );
        assert_eq!(got[1].stdout, b"still-here\n");
    }

    #[test]
    fn test_serve_truncated_request_error() {
        let mut input = frames(&[run(&["true"])]);
        input.pop();

        let err = serve(&mut input.as_slice(), &mut Vec::new(), &DirectWaiter).unwrap_err();

        assert!(matches!(
            err,
            SessionError::ReadRequest(FrameError::Truncated)
        ));
    }
}
