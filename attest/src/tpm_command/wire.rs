//! Command and response framing (TPM 2.0 Library Part 1 §18.6–§18.10; Part 2 §10.13
//! `TPMS_AUTH_COMMAND`/`TPMS_AUTH_RESPONSE`; response codes Part 2 §6.6).
//!
//! A command is `tag u16 | commandSize u32 | commandCode u32 | handles u32* |
//! [authorizationSize u32 | TPMS_AUTH_COMMAND+] | parameters`, the authorization area present
//! exactly when the tag is `TPM_ST_SESSIONS`. A response is `tag | responseSize | responseCode |
//! handles* | [parameterSize u32] | parameters | [TPMS_AUTH_RESPONSE+]`.

use super::{CommandError, TPM_RC_INITIALIZE, TPM_RC_LOCALITY, TPM_RC_RETRY};
use crate::tpm_types::{put_tpm2b, Reader, TpmError};

pub const TPM_ST_NO_SESSIONS: u16 = 0x8001;
pub const TPM_ST_SESSIONS: u16 = 0x8002;
/// Largest response accepted: the TPM 2.0 reference implementation's and swtpm's
/// `MAX_RESPONSE_SIZE`, and what the Linux TPM driver buffers.
pub const MAX_RESPONSE: usize = 4096;
/// Largest command built here (the same limit applies on the way in).
pub const MAX_COMMAND: usize = 4096;
const HEADER: usize = 10;
/// Nonces and HMACs in authorization responses are digests (at most SHA-512).
const MAX_SESSION_FIELD: usize = 64;

/// One authorization of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// `TPM_RS_PW` with an empty password.
    EmptyPassword,
    /// A policy session whose policy needs no HMAC (no `PolicyAuthValue`/`PolicyPassword`),
    /// closed by the TPM once the command succeeds.
    Policy(u32),
}

impl Auth {
    fn write(&self, out: &mut Vec<u8>) {
        let handle = match self {
            Auth::EmptyPassword => super::TPM_RS_PW,
            Auth::Policy(handle) => *handle,
        };
        out.extend_from_slice(&handle.to_be_bytes());
        put_tpm2b(out, &[]); // nonceCaller
        out.push(0); // sessionAttributes: continueSession clear (ignored for TPM_RS_PW)
        put_tpm2b(out, &[]); // hmac
    }
}

/// A command being built.
#[derive(Debug)]
pub struct Command {
    code: u32,
    handles: Vec<u32>,
    auths: Vec<Auth>,
    params: Vec<u8>,
}

impl Command {
    pub fn new(code: u32) -> Self {
        Self {
            code,
            handles: Vec::new(),
            auths: Vec::new(),
            params: Vec::new(),
        }
    }

    pub fn handle(mut self, handle: u32) -> Self {
        self.handles.push(handle);
        self
    }

    pub fn auth(mut self, auth: Auth) -> Self {
        self.auths.push(auth);
        self
    }

    pub fn u8(mut self, v: u8) -> Self {
        self.params.push(v);
        self
    }

    pub fn u16(mut self, v: u16) -> Self {
        self.params.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u32(mut self, v: u32) -> Self {
        self.params.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.params.extend_from_slice(bytes);
        self
    }

    /// A `TPM2B`; callers bound `data` first (see the builders in `commands`).
    pub fn tpm2b(mut self, data: &[u8]) -> Self {
        put_tpm2b(&mut self.params, data);
        self
    }

    /// The marshalled command.
    pub fn build(self) -> Vec<u8> {
        let mut auth = Vec::new();
        for a in &self.auths {
            a.write(&mut auth);
        }
        let tag = if self.auths.is_empty() {
            TPM_ST_NO_SESSIONS
        } else {
            TPM_ST_SESSIONS
        };
        let mut out = Vec::with_capacity(HEADER + 4 * self.handles.len() + auth.len() + 64);
        out.extend_from_slice(&tag.to_be_bytes());
        out.extend_from_slice(&[0; 4]); // size, below
        out.extend_from_slice(&self.code.to_be_bytes());
        for h in &self.handles {
            out.extend_from_slice(&h.to_be_bytes());
        }
        if !self.auths.is_empty() {
            out.extend_from_slice(&(auth.len() as u32).to_be_bytes());
            out.extend_from_slice(&auth);
        }
        out.extend_from_slice(&self.params);
        let size = u32::try_from(out.len()).expect("commands built here are far below 4 GiB");
        out[2..6].copy_from_slice(&size.to_be_bytes());
        out
    }
}

/// The response code of `rsp`, if it has a whole header.
pub fn peek_rc(rsp: &[u8]) -> Option<u32> {
    let rc = rsp.get(6..10)?;
    Some(u32::from_be_bytes([rc[0], rc[1], rc[2], rc[3]]))
}

/// A successful response's handle area and parameter area.
#[derive(Debug)]
pub struct Response<'a> {
    pub handles: Vec<u32>,
    /// The parameters; the command's parser must consume them all ([`Reader::finish`]).
    pub params: Reader<'a>,
}

fn malformed(command: &'static str) -> impl Fn(TpmError) -> CommandError {
    move |source| CommandError::Response { command, source }
}

fn invalid(command: &'static str, what: &'static str, why: &'static str) -> CommandError {
    CommandError::Response {
        command,
        source: TpmError::Invalid { what, why },
    }
}

/// Checks the framing of the response to `command` (sent with `sessions` authorizations) and
/// splits off `handles` handles and the authorization responses.
pub fn parse_response<'a>(
    command: &'static str,
    rsp: &'a [u8],
    handles: usize,
    sessions: usize,
) -> Result<Response<'a>, CommandError> {
    let bad = malformed(command);
    if rsp.len() > MAX_RESPONSE {
        return Err(bad(TpmError::TooLarge {
            what: "response",
            size: rsp.len(),
            max: MAX_RESPONSE,
        }));
    }
    let mut r = Reader::new(rsp);
    let tag = r.u16("response tag").map_err(&bad)?;
    let size = r.u32("responseSize").map_err(&bad)?;
    let rc = r.u32("responseCode").map_err(&bad)?;
    if !matches!(tag, TPM_ST_NO_SESSIONS | TPM_ST_SESSIONS) {
        return Err(bad(TpmError::Unsupported {
            what: "response tag",
            value: tag.into(),
        }));
    }
    if size as usize != rsp.len() {
        return Err(invalid(
            command,
            "responseSize",
            "differs from the bytes received",
        ));
    }
    if rc != 0 {
        return Err(CommandError::Tpm { command, rc });
    }
    let want_tag = if sessions > 0 {
        TPM_ST_SESSIONS
    } else {
        TPM_ST_NO_SESSIONS
    };
    if tag != want_tag {
        return Err(invalid(
            command,
            "response tag",
            "sessions in the response differ from the command's",
        ));
    }
    let handles = (0..handles)
        .map(|_| r.u32("response handle"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(&bad)?;
    if sessions == 0 {
        let rest = r.bytes(rsp.len() - HEADER - 4 * handles.len(), "parameters");
        return Ok(Response {
            handles,
            params: Reader::new(rest.map_err(&bad)?),
        });
    }
    let param_size = r.u32("parameterSize").map_err(&bad)? as usize;
    let params = r.bytes(param_size, "parameters").map_err(&bad)?;
    for _ in 0..sessions {
        r.tpm2b(MAX_SESSION_FIELD, "authorization nonceTPM")
            .map_err(&bad)?;
        r.u8("authorization sessionAttributes").map_err(&bad)?;
        r.tpm2b(MAX_SESSION_FIELD, "authorization hmac")
            .map_err(&bad)?;
    }
    r.finish("authorization area").map_err(&bad)?;
    Ok(Response {
        handles,
        params: Reader::new(params),
    })
}

/// Parses a response that carries nothing but its header.
pub fn parse_empty(command: &'static str, rsp: &[u8], sessions: usize) -> Result<(), CommandError> {
    let r = parse_response(command, rsp, 0, sessions)?;
    r.params.finish("parameters").map_err(malformed(command))
}

/// Maps a parse error of `command`'s parameters.
pub fn params_err(command: &'static str) -> impl Fn(TpmError) -> CommandError {
    malformed(command)
}

/// `TPM_RC` names for the codes Zones can meet, with the handle/session/parameter a format-one
/// code points at (Part 2 §6.6.3): `"0x98e TPM_RC_AUTH_FAIL (session 1)"`.
pub fn rc_name(rc: u32) -> String {
    let (base, which) = if rc & 0x80 != 0 {
        let n = (rc >> 8) & 0xf;
        let which = if rc & 0x40 != 0 {
            format!(" (parameter {n})")
        } else if n & 0x8 != 0 {
            format!(" (session {})", n & 0x7)
        } else if n != 0 {
            format!(" (handle {n})")
        } else {
            String::new()
        };
        ((rc & 0x3f) | 0x80, which)
    } else {
        (rc, String::new())
    };
    let name = match base {
        TPM_RC_INITIALIZE => "TPM_RC_INITIALIZE",
        0x101 => "TPM_RC_FAILURE",
        0x81 => "TPM_RC_ASYMMETRIC",
        0x82 => "TPM_RC_ATTRIBUTES",
        0x83 => "TPM_RC_HASH",
        0x84 => "TPM_RC_VALUE",
        0x85 => "TPM_RC_HIERARCHY",
        0x87 => "TPM_RC_KEY_SIZE",
        0x8a => "TPM_RC_TYPE",
        0x8b => "TPM_RC_HANDLE",
        0x8e => "TPM_RC_AUTH_FAIL",
        0x8f => "TPM_RC_NONCE",
        0x92 => "TPM_RC_SCHEME",
        0x95 => "TPM_RC_SIZE",
        0x96 => "TPM_RC_SYMMETRIC",
        0x97 => "TPM_RC_TAG",
        0x98 => "TPM_RC_SELECTOR",
        0x9a => "TPM_RC_INSUFFICIENT",
        0x9b => "TPM_RC_SIGNATURE",
        0x9c => "TPM_RC_KEY",
        0x9d => "TPM_RC_POLICY_FAIL",
        0x9f => "TPM_RC_INTEGRITY",
        0xa2 => "TPM_RC_BAD_AUTH",
        0xa6 => "TPM_RC_CURVE",
        0xa7 => "TPM_RC_ECC_POINT",
        0x1e => "TPM_RC_BAD_TAG",
        0x120 => "TPM_RC_DISABLED",
        0x125 => "TPM_RC_AUTH_MISSING",
        0x126 => "TPM_RC_POLICY",
        0x127 => "TPM_RC_PCR",
        0x128 => "TPM_RC_PCR_CHANGED",
        0x12e => "TPM_RC_TOO_MANY_CONTEXTS",
        0x12f => "TPM_RC_AUTH_UNAVAILABLE",
        0x142 => "TPM_RC_COMMAND_SIZE",
        0x143 => "TPM_RC_COMMAND_CODE",
        0x144 => "TPM_RC_AUTHSIZE",
        0x145 => "TPM_RC_AUTH_CONTEXT",
        0x902 => "TPM_RC_OBJECT_MEMORY",
        0x903 => "TPM_RC_SESSION_MEMORY",
        0x901 => "TPM_RC_CONTEXT_GAP",
        TPM_RC_LOCALITY => "TPM_RC_LOCALITY",
        0x908 => "TPM_RC_YIELDED",
        0x909 => "TPM_RC_CANCELED",
        0x90a => "TPM_RC_TESTING",
        0x921 => "TPM_RC_LOCKOUT",
        TPM_RC_RETRY => "TPM_RC_RETRY",
        0x923 => "TPM_RC_NV_UNAVAILABLE",
        _ => "",
    };
    if name.is_empty() {
        format!("TPM_RC {rc:#x}")
    } else {
        format!("TPM_RC {rc:#x} {name}{which}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(tag: u16, rc: u32, body: &[u8]) -> Vec<u8> {
        let mut r = tag.to_be_bytes().to_vec();
        r.extend_from_slice(&((10 + body.len()) as u32).to_be_bytes());
        r.extend_from_slice(&rc.to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    #[test]
    fn test_rc_name_format_one_points_at_session_parameter_handle() {
        assert_eq!(rc_name(0x98e), "TPM_RC 0x98e TPM_RC_AUTH_FAIL (session 1)");
        assert_eq!(rc_name(0x1c4), "TPM_RC 0x1c4 TPM_RC_VALUE (parameter 1)");
        assert_eq!(rc_name(0x18b), "TPM_RC 0x18b TPM_RC_HANDLE (handle 1)");
        assert_eq!(rc_name(0x922), "TPM_RC 0x922 TPM_RC_RETRY");
        assert_eq!(rc_name(0x7777), "TPM_RC 0x7777");
    }

    #[test]
    fn test_parse_response_error_code_names_command_and_rc() {
        let e = parse_response(
            "ActivateCredential",
            &response(TPM_ST_NO_SESSIONS, 0xa9d, &[]),
            0,
            2,
        )
        .expect_err("an error code");
        assert_eq!(e.rc(), Some(0xa9d));
        assert_eq!(
            e.to_string(),
            "TPM2_ActivateCredential returned TPM_RC 0xa9d TPM_RC_POLICY_FAIL (session 2)"
        );
    }

    #[test]
    fn test_parse_response_header_problems_refused() {
        // Truncated header, wrong tag, size lying both ways, oversized.
        for n in 0..10 {
            let r = response(TPM_ST_NO_SESSIONS, 0, &[]);
            assert!(matches!(
                parse_response("X", &r[..n], 0, 0),
                Err(CommandError::Response { .. })
            ));
        }
        let r = response(0x00c4, 0, &[]); // a TPM 1.2 tag
        let e = parse_response("X", &r, 0, 0).expect_err("wrong tag");
        assert!(e.to_string().contains("TPM2_X"), "{e}");
        let mut r = response(TPM_ST_NO_SESSIONS, 0, &[1, 2]);
        r[5] = 11;
        assert!(parse_response("X", &r, 0, 0).is_err());
        r[5] = 13;
        assert!(parse_response("X", &r, 0, 0).is_err());
        let big = response(TPM_ST_NO_SESSIONS, 0, &vec![0; MAX_RESPONSE]);
        assert!(matches!(
            parse_response("X", &big, 0, 0),
            Err(CommandError::Response {
                source: TpmError::TooLarge { .. },
                ..
            })
        ));
        // Sessions sent but none answered, and the other way round.
        assert!(parse_response("X", &response(TPM_ST_NO_SESSIONS, 0, &[]), 0, 1).is_err());
        let mut body = 0u32.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 0, 1, 0, 0]);
        assert!(parse_response("X", &response(TPM_ST_SESSIONS, 0, &body), 0, 0).is_err());
        assert!(parse_response("X", &response(TPM_ST_SESSIONS, 0, &body), 0, 1).is_ok());
    }

    #[test]
    fn test_parse_response_parameter_size_and_auth_area_bounded() {
        // parameterSize larger than what follows.
        let mut body = 100u32.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 0, 1, 0, 0]);
        assert!(parse_response("X", &response(TPM_ST_SESSIONS, 0, &body), 0, 1).is_err());
        // An authorization response with a 65-byte nonce.
        let mut body = 0u32.to_be_bytes().to_vec();
        body.extend_from_slice(&65u16.to_be_bytes());
        body.extend_from_slice(&[0; 65]);
        body.extend_from_slice(&[1, 0, 0]);
        assert!(matches!(
            parse_response("X", &response(TPM_ST_SESSIONS, 0, &body), 0, 1),
            Err(CommandError::Response {
                source: TpmError::TooLarge { .. },
                ..
            })
        ));
        // Trailing bytes after the last authorization.
        let mut body = 0u32.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 0, 1, 0, 0, 9]);
        assert!(matches!(
            parse_response("X", &response(TPM_ST_SESSIONS, 0, &body), 0, 1),
            Err(CommandError::Response {
                source: TpmError::TrailingBytes { .. },
                ..
            })
        ));
    }

    #[test]
    fn test_command_build_two_sessions_layout() {
        let c = Command::new(0x147)
            .handle(0x8000_0001)
            .handle(0x8000_0000)
            .auth(Auth::EmptyPassword)
            .auth(Auth::Policy(0x0300_0000))
            .tpm2b(&[7])
            .build();
        let want = "8002 0000002b 00000147 80000001 80000000 00000012 \
                    40000009 0000 00 0000 03000000 0000 00 0000 0001 07";
        assert_eq!(hex::encode(&c), want.replace(' ', ""));
    }
}
