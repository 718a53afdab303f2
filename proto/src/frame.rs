//! Length-delimited framing of protobuf messages over a byte stream.
//!
//! A frame is a base-128 varint byte length followed by that many bytes of an encoded
//! message: exactly what prost's `encode_length_delimited` writes. Frames are capped at
//! [`MAX_FRAME_LEN`] so that a peer cannot make the reader allocate without bound.

use std::io::{self, Read, Write};

use prost::Message;

/// Largest frame either side accepts or sends: 16 MiB.
pub const MAX_FRAME_LEN: u64 = 16 << 20;

/// A varint length takes at most 10 bytes.
const MAX_VARINT_LEN: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("reading frame")]
    Read(#[source] io::Error),
    #[error("writing frame")]
    Write(#[source] io::Error),
    #[error("stream ended inside a frame")]
    Truncated,
    #[error("frame length prefix is not a valid varint")]
    BadLength,
    /// The payload has not been read; the caller may skip `len` bytes to resynchronise.
    #[error("frame of {len} bytes exceeds the {max} byte limit")]
    TooLarge { len: u64, max: u64 },
    #[error("decoding frame payload")]
    Decode(#[source] prost::DecodeError),
}

/// Reads one frame and decodes it as `M`. Returns `Ok(None)` on a clean end of stream
/// (no byte of a new frame was read).
pub fn read_frame<M: Message + Default>(reader: &mut impl Read) -> Result<Option<M>, FrameError> {
    let Some(len) = read_length(reader)? else {
        return Ok(None);
    };
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    let len = usize::try_from(len).map_err(|_| FrameError::BadLength)?;
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).map_err(eof_is_truncation)?;
    M::decode(payload.as_slice())
        .map(Some)
        .map_err(FrameError::Decode)
}

/// Encodes `message` as one frame, writes it and flushes.
pub fn write_frame(writer: &mut impl Write, message: &impl Message) -> Result<(), FrameError> {
    let len = message.encoded_len() as u64;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    let bytes = message.encode_length_delimited_to_vec();
    writer.write_all(&bytes).map_err(FrameError::Write)?;
    writer.flush().map_err(FrameError::Write)
}

/// Reads the varint length prefix byte by byte, so that nothing past it is consumed.
fn read_length(reader: &mut impl Read) -> Result<Option<u64>, FrameError> {
    let mut value = 0u64;
    for index in 0..MAX_VARINT_LEN {
        let mut byte = [0u8; 1];
        match reader.read_exact(&mut byte) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && index == 0 => return Ok(None),
            Err(e) => return Err(eof_is_truncation(e)),
        }
        let bits = u64::from(byte[0] & 0x7f);
        if index == MAX_VARINT_LEN - 1 && bits > 1 {
            return Err(FrameError::BadLength);
        }
        value |= bits << (7 * index);
        if byte[0] & 0x80 == 0 {
            return Ok(Some(value));
        }
    }
    Err(FrameError::BadLength)
}

fn eof_is_truncation(e: io::Error) -> FrameError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        FrameError::Truncated
    } else {
        FrameError::Read(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::v1::{AgentReady, WriteStdinRequest};

    fn ready(kernel: &str) -> AgentReady {
        AgentReady {
            agent_version: "x".repeat(300),
            kernel_release: kernel.to_string(),
            online_cpus: 2,
        }
    }

    #[test]
    fn test_frame_two_messages_round_trip() {
        let first = ready("6.12");
        let second = ready("6.1");
        let mut stream = Vec::new();
        write_frame(&mut stream, &first).unwrap();
        write_frame(&mut stream, &second).unwrap();

        let mut reader = stream.as_slice();
        let got_first: Option<AgentReady> = read_frame(&mut reader).unwrap();
        let got_second: Option<AgentReady> = read_frame(&mut reader).unwrap();
        let end: Option<AgentReady> = read_frame(&mut reader).unwrap();

        assert_eq!(got_first, Some(first));
        assert_eq!(got_second, Some(second));
        assert_eq!(end, None);
    }

    #[test]
    fn test_frame_empty_message_round_trips() {
        let mut stream = Vec::new();
        write_frame(&mut stream, &AgentReady::default()).unwrap();

        let got: Option<AgentReady> = read_frame(&mut stream.as_slice()).unwrap();

        assert_eq!(stream, vec![0]);
        assert_eq!(got, Some(AgentReady::default()));
    }

    #[test]
    fn test_frame_oversized_length_too_large() {
        let mut stream = Vec::new();
        prost::encoding::encode_varint(MAX_FRAME_LEN + 1, &mut stream);

        let err = read_frame::<AgentReady>(&mut stream.as_slice()).unwrap_err();

        assert!(matches!(err, FrameError::TooLarge { len, .. } if len == MAX_FRAME_LEN + 1));
    }

    #[test]
    fn test_frame_write_oversized_too_large() {
        let big = WriteStdinRequest {
            data: vec![0; MAX_FRAME_LEN as usize + 1],
            ..Default::default()
        };

        let err = write_frame(&mut Vec::new(), &big).unwrap_err();

        assert!(matches!(err, FrameError::TooLarge { .. }));
    }

    #[test]
    fn test_frame_truncated_payload_truncated() {
        let mut stream = Vec::new();
        write_frame(&mut stream, &ready("6.6")).unwrap();
        stream.truncate(stream.len() - 1);

        let err = read_frame::<AgentReady>(&mut stream.as_slice()).unwrap_err();

        assert!(matches!(err, FrameError::Truncated));
    }

    #[test]
    fn test_frame_truncated_length_truncated() {
        let stream = [0x80u8];

        let err = read_frame::<AgentReady>(&mut stream.as_slice()).unwrap_err();

        assert!(matches!(err, FrameError::Truncated));
    }

    #[test]
    fn test_frame_overlong_varint_bad_length() {
        let stream = [0xffu8; 11];

        let err = read_frame::<AgentReady>(&mut stream.as_slice()).unwrap_err();

        assert!(matches!(err, FrameError::BadLength));
    }

    #[test]
    fn test_frame_garbage_payload_decode_error() {
        let stream = [2u8, 0xff, 0xff];

        let err = read_frame::<AgentReady>(&mut stream.as_slice()).unwrap_err();

        assert!(matches!(err, FrameError::Decode(_)));
    }
}
