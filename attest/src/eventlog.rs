//! The TCG PC Client *crypto-agile* event log, SHA-256 bank (TCG PC Client Platform Firmware
//! Profile Specification 1.05, §10.2 "Event Log Format", §10.4.5 "Spec ID Event"; the same
//! layout as Linux's `include/linux/tpm_eventlog.h`).
//!
//! The log is a sequence of little-endian records:
//!
//! 1. one header in the old SHA-1 format, `TCG_PCR_EVENT`:
//!    `pcrIndex u32 = 0, eventType u32 = EV_NO_ACTION, digest [20] = 0, eventDataSize u32,
//!    event = TCG_EfiSpecIDEvent`, whose signature is `"Spec ID Event03\0"` and which lists
//!    the digest banks the following records carry (`{algorithmId u16, digestSize u16}`);
//! 2. any number of `TCG_PCR_EVENT2`: `pcrIndex u32, eventType u32,
//!    TPML_DIGEST_VALUES {count u32, {hashAlg u16, digest}[count]}, eventSize u32, event`.
//!
//! [`EventLog::to_bytes`] writes a log with the SHA-256 bank only. [`EventLog::parse`] reads
//! logs from anyone (they are hostile input for a verifier): it accepts any bank list in the
//! header as long as SHA-256 is in it and every record carries exactly the header's banks, and
//! it refuses truncated, oversized or inconsistent input with an [`EventLogError`] naming the
//! offset. [`EventLog::replay`] computes the SHA-256 PCR values the TPM should hold.

use sha2::{Digest as _, Sha256};

/// `EV_NO_ACTION`: informational, never extended (the header, `StartupLocality`).
pub const EV_NO_ACTION: u32 = 0x3;
/// `EV_SEPARATOR`: the end of a boot phase in PCRs 0-7.
pub const EV_SEPARATOR: u32 = 0x4;
/// `EV_EVENT_TAG`: tagged data (`TCG_PCClientTaggedEvent`), as the Linux EFI stub's initrd event.
pub const EV_EVENT_TAG: u32 = 0x6;
/// `EV_S_CRTM_VERSION`: the version of the core root of trust (the VMM, for a zone).
pub const EV_S_CRTM_VERSION: u32 = 0x8;
/// `EV_PLATFORM_CONFIG_FLAGS`: the platform's configuration.
pub const EV_PLATFORM_CONFIG_FLAGS: u32 = 0xa;
/// `EV_IPL`: initial program loader data (kernel, command line).
pub const EV_IPL: u32 = 0xd;

/// `TPM_ALG_SHA1`, the header record's digest algorithm.
pub const TPM_ALG_SHA1: u16 = 0x0004;
/// `TPM_ALG_SHA256`, the one bank this module writes and replays.
pub const TPM_ALG_SHA256: u16 = 0x000b;
/// Size of a SHA-256 digest.
pub const SHA256_LEN: usize = 32;
/// PCRs of a PC Client TPM.
pub const PCR_COUNT: usize = 24;

/// The Spec ID Event's signature, NUL included.
pub const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";
/// Signature of the `EV_NO_ACTION` event that says which locality sent `TPM2_Startup`.
pub const STARTUP_LOCALITY_SIGNATURE: &[u8; 16] = b"StartupLocality\0";

/// Largest log [`EventLog::parse`] accepts (Linux caps firmware logs at 256 KiB too).
pub const MAX_LOG_LEN: usize = 256 * 1024;
/// Most records (header excluded) [`EventLog::parse`] accepts.
pub const MAX_EVENTS: usize = 1024;
/// Largest event data of one record [`EventLog::parse`] accepts.
pub const MAX_EVENT_DATA: usize = 64 * 1024;
/// Most digest banks a header may list.
pub const MAX_BANKS: usize = 8;
/// Largest digest a header may declare (SHA-512).
pub const MAX_DIGEST_LEN: usize = 64;

/// Length of the header record's fixed part (before its event data).
const HEADER_FIXED_LEN: usize = 4 + 4 + 20 + 4;
/// `TCG_EfiSpecIDEvent` fields before the bank list.
const SPEC_ID_FIXED_LEN: usize = 16 + 4 + 1 + 1 + 1 + 1 + 4;

/// A SHA-256 digest.
pub type Sha256Digest = [u8; SHA256_LEN];

/// Why a log was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventLogError {
    #[error("the log is {0} bytes, more than the {MAX_LOG_LEN} accepted")]
    TooLarge(usize),
    #[error("the log ends inside {what} at offset {offset}")]
    Truncated { what: &'static str, offset: usize },
    #[error("the first record is not an EV_NO_ACTION Spec ID Event03 header")]
    NoSpecIdHeader,
    #[error("the Spec ID header is malformed: {0}")]
    BadSpecId(&'static str),
    #[error("the Spec ID header has no SHA-256 bank")]
    NoSha256Bank,
    #[error("record {index} at offset {offset}: PCR {pcr} is out of range")]
    BadPcr {
        index: usize,
        offset: usize,
        pcr: u32,
    },
    #[error("record {index} at offset {offset}: {count} digests, the header declares {banks}")]
    BadDigestCount {
        index: usize,
        offset: usize,
        count: u32,
        banks: usize,
    },
    #[error("record {index} at offset {offset}: digest algorithm {alg:#06x} is not the header's bank at that position")]
    UnexpectedAlgorithm {
        index: usize,
        offset: usize,
        alg: u16,
    },
    #[error(
        "record {index} at offset {offset}: {size} bytes of event data, more than {MAX_EVENT_DATA}"
    )]
    EventTooLarge {
        index: usize,
        offset: usize,
        size: u32,
    },
    #[error("more than {MAX_EVENTS} records")]
    TooManyEvents,
}

/// One `TCG_PCR_EVENT2` record, SHA-256 bank.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub pcr: u32,
    pub event_type: u32,
    pub digest: Sha256Digest,
    pub data: Vec<u8>,
}

impl Event {
    /// An event whose digest is the SHA-256 of its own data.
    pub fn of_data(pcr: u32, event_type: u32, data: Vec<u8>) -> Self {
        Self {
            pcr,
            event_type,
            digest: sha256(&data),
            data,
        }
    }

    /// The locality an `EV_NO_ACTION` `StartupLocality` event records, if this is one.
    pub fn startup_locality(&self) -> Option<u8> {
        if self.event_type != EV_NO_ACTION || self.data.len() != 17 {
            return None;
        }
        self.data
            .strip_prefix(STARTUP_LOCALITY_SIGNATURE)
            .map(|rest| rest[0])
    }
}

/// PCR values of the SHA-256 bank, index = PCR number.
pub type PcrBank = [Sha256Digest; PCR_COUNT];

/// A crypto-agile event log: the Spec ID header (implied) and its records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventLog {
    pub events: Vec<Event>,
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Sha256Digest {
    Sha256::digest(data).into()
}

/// `PCR_Extend`: the new value is `SHA-256(old || digest)`.
pub fn extend(pcr: &Sha256Digest, digest: &Sha256Digest) -> Sha256Digest {
    let mut h = Sha256::new();
    h.update(pcr);
    h.update(digest);
    h.finalize().into()
}

/// The values PCRs hold after `TPM2_Startup(CLEAR)` sent at `startup_locality`: PCRs 17-22
/// (the DRTM PCRs) are all ones until a dynamic launch resets them, the others zero, except
/// PCR 0, whose last byte is the startup locality (PC Client Platform TPM Profile, "PCR
/// initial values"; checked against swtpm 0.7.1 in the VMM's vTPM tests).
pub fn initial_pcrs(startup_locality: u8) -> PcrBank {
    let mut pcrs = [[0u8; SHA256_LEN]; PCR_COUNT];
    for pcr in &mut pcrs[17..=22] {
        *pcr = [0xff; SHA256_LEN];
    }
    pcrs[0][SHA256_LEN - 1] = startup_locality;
    pcrs
}

impl EventLog {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, event: Event) {
        self.events.push(event);
    }

    /// The log in its binary form: the Spec ID header (SHA-256 bank only), then each record.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(64 + self.events.iter().map(|e| 48 + e.data.len()).sum::<usize>());
        let spec_id = spec_id_event();
        out.extend(0u32.to_le_bytes());
        out.extend(EV_NO_ACTION.to_le_bytes());
        out.extend([0u8; 20]);
        out.extend(len_u32(spec_id.len()).to_le_bytes());
        out.extend(spec_id);
        for e in &self.events {
            out.extend(e.pcr.to_le_bytes());
            out.extend(e.event_type.to_le_bytes());
            out.extend(1u32.to_le_bytes());
            out.extend(TPM_ALG_SHA256.to_le_bytes());
            out.extend(e.digest);
            out.extend(len_u32(e.data.len()).to_le_bytes());
            out.extend(&e.data);
        }
        out
    }

    /// Parses a binary log. Only the SHA-256 digests are kept.
    pub fn parse(bytes: &[u8]) -> Result<Self, EventLogError> {
        if bytes.len() > MAX_LOG_LEN {
            return Err(EventLogError::TooLarge(bytes.len()));
        }
        let mut r = Reader { bytes, pos: 0 };
        let banks = parse_header(&mut r)?;
        let mut events = Vec::new();
        while r.pos < bytes.len() {
            if events.len() == MAX_EVENTS {
                return Err(EventLogError::TooManyEvents);
            }
            let index = events.len() + 1;
            let offset = r.pos;
            let pcr = r.u32("a record's PCR index")?;
            if pcr as usize >= PCR_COUNT {
                return Err(EventLogError::BadPcr { index, offset, pcr });
            }
            let event_type = r.u32("a record's event type")?;
            let count = r.u32("a record's digest count")?;
            if count as usize != banks.len() {
                return Err(EventLogError::BadDigestCount {
                    index,
                    offset,
                    count,
                    banks: banks.len(),
                });
            }
            let mut digest = None;
            for &(bank_alg, size) in &banks {
                let alg = r.u16("a digest's algorithm")?;
                if alg != bank_alg {
                    return Err(EventLogError::UnexpectedAlgorithm { index, offset, alg });
                }
                let d = r.take(usize::from(size), "a digest")?;
                if alg == TPM_ALG_SHA256 {
                    let mut sha = [0u8; SHA256_LEN];
                    sha.copy_from_slice(d);
                    digest = Some(sha);
                }
            }
            let size = r.u32("a record's event size")?;
            if size as usize > MAX_EVENT_DATA {
                return Err(EventLogError::EventTooLarge {
                    index,
                    offset,
                    size,
                });
            }
            let data = r.take(size as usize, "a record's event data")?.to_vec();
            events.push(Event {
                pcr,
                event_type,
                // parse_header checked that SHA-256 is one of the banks.
                digest: digest.ok_or(EventLogError::NoSha256Bank)?,
                data,
            });
        }
        Ok(Self { events })
    }

    /// The SHA-256 PCR values after `TPM2_Startup(CLEAR)` and every record's extend.
    /// `EV_NO_ACTION` records are not extended; a `StartupLocality` one sets PCR 0's start.
    pub fn replay(&self) -> PcrBank {
        let locality = self
            .events
            .iter()
            .find_map(Event::startup_locality)
            .unwrap_or(0);
        let mut pcrs = initial_pcrs(locality);
        for e in &self.events {
            if e.event_type == EV_NO_ACTION {
                continue;
            }
            if let Some(pcr) = pcrs.get_mut(e.pcr as usize) {
                *pcr = extend(pcr, &e.digest);
            }
        }
        pcrs
    }
}

/// The `TCG_EfiSpecIDEvent` for a SHA-256-only log.
fn spec_id_event() -> Vec<u8> {
    let mut e = Vec::with_capacity(SPEC_ID_FIXED_LEN + 4 + 1);
    e.extend(SPEC_ID_SIGNATURE);
    e.extend(0u32.to_le_bytes()); // platformClass: client
    e.push(0); // specVersionMinor
    e.push(2); // specVersionMajor
    e.push(0); // specErrata
    e.push(2); // uintnSize: UINTN is 64 bits
    e.extend(1u32.to_le_bytes()); // numberOfAlgorithms
    e.extend(TPM_ALG_SHA256.to_le_bytes());
    e.extend((SHA256_LEN as u16).to_le_bytes());
    e.push(0); // vendorInfoSize
    e
}

/// Reads the header record; returns the banks `(algorithm, digest size)` it declares.
fn parse_header(r: &mut Reader<'_>) -> Result<Vec<(u16, u16)>, EventLogError> {
    let head = r.take(HEADER_FIXED_LEN, "the Spec ID header")?;
    let pcr = u32_le(&head[0..4]);
    let event_type = u32_le(&head[4..8]);
    if pcr != 0 || event_type != EV_NO_ACTION || head[8..28].iter().any(|b| *b != 0) {
        return Err(EventLogError::NoSpecIdHeader);
    }
    let size = u32_le(&head[28..32]) as usize;
    if size > MAX_EVENT_DATA {
        return Err(EventLogError::BadSpecId("its event data is too large"));
    }
    let spec = r.take(size, "the Spec ID header's event data")?;
    let mut s = Reader {
        bytes: spec,
        pos: 0,
    };
    let fixed = s
        .take(SPEC_ID_FIXED_LEN, "the Spec ID event")
        .map_err(|_| EventLogError::BadSpecId("shorter than its fixed fields"))?;
    if &fixed[..16] != SPEC_ID_SIGNATURE {
        return Err(EventLogError::NoSpecIdHeader);
    }
    let n = u32_le(&fixed[24..28]) as usize;
    if n == 0 || n > MAX_BANKS {
        return Err(EventLogError::BadSpecId("bank count is 0 or too large"));
    }
    let mut banks = Vec::with_capacity(n);
    for _ in 0..n {
        let alg = s
            .u16("a bank")
            .map_err(|_| EventLogError::BadSpecId("its bank list is truncated"))?;
        let size = s
            .u16("a bank")
            .map_err(|_| EventLogError::BadSpecId("its bank list is truncated"))?;
        if size == 0 || usize::from(size) > MAX_DIGEST_LEN {
            return Err(EventLogError::BadSpecId(
                "a bank's digest size is 0 or too large",
            ));
        }
        if alg == TPM_ALG_SHA256 && usize::from(size) != SHA256_LEN {
            return Err(EventLogError::BadSpecId(
                "the SHA-256 bank's digest size is not 32",
            ));
        }
        if banks.iter().any(|(a, _)| *a == alg) {
            return Err(EventLogError::BadSpecId("a bank is listed twice"));
        }
        banks.push((alg, size));
    }
    let vendor = s
        .u8()
        .map_err(|_| EventLogError::BadSpecId("vendorInfoSize is missing"))?;
    if s.take(usize::from(vendor), "vendor info").is_err() || s.pos != spec.len() {
        return Err(EventLogError::BadSpecId(
            "vendorInfoSize disagrees with the event size",
        ));
    }
    if !banks.iter().any(|(a, _)| *a == TPM_ALG_SHA256) {
        return Err(EventLogError::NoSha256Bank);
    }
    Ok(banks)
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).expect("event data is far smaller than 4 GiB")
}

fn u32_le(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// A bounds-checked cursor over the log.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], EventLogError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(EventLogError::Truncated {
                what,
                offset: self.pos,
            })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, EventLogError> {
        Ok(self.take(1, "a byte")?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, EventLogError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, EventLogError> {
        Ok(u32_le(self.take(4, what)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EventLog {
        let mut log = EventLog::new();
        log.push(Event::of_data(
            0,
            EV_S_CRTM_VERSION,
            b"zone-vmm 0.1.0".to_vec(),
        ));
        log.push(Event::of_data(
            1,
            EV_PLATFORM_CONFIG_FLAGS,
            b"vcpus=1\n".to_vec(),
        ));
        log.push(Event::of_data(0, EV_SEPARATOR, vec![0; 4]));
        log.push(Event {
            pcr: 4,
            event_type: EV_IPL,
            digest: sha256(b"kernel bytes"),
            data: b"zone-kernel".to_vec(),
        });
        log.push(Event::of_data(15, EV_IPL, b"zone-id=z1".to_vec()));
        log
    }

    #[test]
    fn test_eventlog_round_trip_same_events() {
        let log = sample();
        let bytes = log.to_bytes();
        assert_eq!(EventLog::parse(&bytes), Ok(log));
    }

    #[test]
    fn test_eventlog_header_bytes_match_spec_layout() {
        let bytes = EventLog::new().to_bytes();
        // TCG_PCR_EVENT: PCR 0, EV_NO_ACTION, 20 zero bytes, size 33.
        assert_eq!(&bytes[0..8], &[0, 0, 0, 0, 3, 0, 0, 0]);
        assert!(bytes[8..28].iter().all(|b| *b == 0));
        assert_eq!(u32_le(&bytes[28..32]), 33);
        assert_eq!(&bytes[32..48], SPEC_ID_SIGNATURE);
        // one bank: SHA-256, 32 bytes; no vendor info.
        assert_eq!(u32_le(&bytes[56..60]), 1);
        assert_eq!(&bytes[60..65], &[0x0b, 0, 32, 0, 0]);
        assert_eq!(bytes.len(), 65);
    }

    #[test]
    fn test_replay_equals_hand_computed_extends() {
        let log = sample();
        let pcrs = log.replay();
        let zero = [0u8; 32];
        let pcr0 = extend(
            &extend(&zero, &sha256(b"zone-vmm 0.1.0")),
            &sha256(&[0, 0, 0, 0]),
        );
        // Hand-computed with sha256 over the concatenation, independent of extend().
        let mut cat = zero.to_vec();
        cat.extend(sha256(b"zone-vmm 0.1.0"));
        let step1 = sha256(&cat);
        let mut cat = step1.to_vec();
        cat.extend(sha256(&[0, 0, 0, 0]));
        assert_eq!(pcr0, sha256(&cat));
        assert_eq!(pcrs[0], pcr0);
        assert_eq!(pcrs[1], extend(&zero, &sha256(b"vcpus=1\n")));
        assert_eq!(pcrs[4], extend(&zero, &sha256(b"kernel bytes")));
        assert_eq!(pcrs[15], extend(&zero, &sha256(b"zone-id=z1")));
        assert_eq!(pcrs[2], zero);
        assert_eq!(pcrs[17], [0xff; 32]);
        // A well-known value: SHA-256 extend of 32 zero bytes into a zero PCR.
        assert_eq!(
            hex::encode(extend(&zero, &zero)),
            "f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb4b"
        );
    }

    #[test]
    fn test_replay_startup_locality_3_sets_pcr0_start_and_is_not_extended() {
        let mut log = EventLog::new();
        let mut data = STARTUP_LOCALITY_SIGNATURE.to_vec();
        data.push(3);
        log.push(Event {
            pcr: 0,
            event_type: EV_NO_ACTION,
            digest: [0; 32],
            data,
        });
        let mut want = [0u8; 32];
        want[31] = 3;
        assert_eq!(log.replay()[0], want);
    }

    #[test]
    fn test_parse_truncated_anywhere_rejected() {
        let bytes = sample().to_bytes();
        let header_len = EventLog::new().to_bytes().len();
        for cut in 0..bytes.len() {
            let r = EventLog::parse(&bytes[..cut]);
            if cut == header_len {
                // The header alone is a valid empty log; so is every cut at a record boundary.
                assert_eq!(r, Ok(EventLog::new()));
                continue;
            }
            match r {
                Ok(log) => assert!(
                    log.to_bytes() == bytes[..cut],
                    "cut {cut} parsed as a different log"
                ),
                Err(e) => assert!(
                    matches!(
                        e,
                        EventLogError::Truncated { .. }
                            | EventLogError::NoSpecIdHeader
                            | EventLogError::BadSpecId(_)
                    ),
                    "cut {cut}: {e}"
                ),
            }
        }
        assert!(matches!(
            EventLog::parse(&bytes[..bytes.len() - 1]),
            Err(EventLogError::Truncated { .. })
        ));
    }

    #[test]
    fn test_parse_garbage_rejected() {
        assert_eq!(
            EventLog::parse(&[]),
            Err(EventLogError::Truncated {
                what: "the Spec ID header",
                offset: 0
            })
        );
        assert_eq!(
            EventLog::parse(&[0xa5; 200]),
            Err(EventLogError::NoSpecIdHeader)
        );
        // A good header followed by junk.
        let mut bytes = EventLog::new().to_bytes();
        bytes.extend([0xa5; 40]);
        assert!(matches!(
            EventLog::parse(&bytes),
            Err(EventLogError::BadPcr { .. })
        ));
        // Wrong signature.
        let mut bytes = sample().to_bytes();
        bytes[32] = b'X';
        assert_eq!(EventLog::parse(&bytes), Err(EventLogError::NoSpecIdHeader));
        // Wrong algorithm in a record.
        let mut bytes = sample().to_bytes();
        bytes[65 + 12] = 0x04;
        assert!(matches!(
            EventLog::parse(&bytes),
            Err(EventLogError::UnexpectedAlgorithm { alg: 0x04, .. })
        ));
    }

    #[test]
    fn test_parse_huge_counts_and_sizes_rejected() {
        let header_len = EventLog::new().to_bytes().len();
        // Digest count of u32::MAX.
        let mut bytes = sample().to_bytes();
        bytes[header_len + 8..header_len + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            EventLog::parse(&bytes),
            Err(EventLogError::BadDigestCount {
                count: u32::MAX,
                ..
            })
        ));
        // Event size of u32::MAX.
        let mut bytes = sample().to_bytes();
        let size_at = header_len + 12 + 2 + 32;
        bytes[size_at..size_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            EventLog::parse(&bytes),
            Err(EventLogError::EventTooLarge { .. })
        ));
        // Event size a little past the end.
        let mut bytes = sample().to_bytes();
        let size = u32_le(&bytes[size_at..size_at + 4]) + 1000;
        bytes[size_at..size_at + 4].copy_from_slice(&size.to_le_bytes());
        assert!(matches!(
            EventLog::parse(&bytes),
            Err(EventLogError::Truncated { .. })
        ));
        // Bank count of u32::MAX in the header.
        let mut bytes = sample().to_bytes();
        bytes[56..60].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            EventLog::parse(&bytes),
            Err(EventLogError::BadSpecId(_))
        ));
        // Header event size of u32::MAX.
        let mut bytes = sample().to_bytes();
        bytes[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            EventLog::parse(&bytes),
            Err(EventLogError::BadSpecId(_))
        ));
        // Too many records, and too many bytes.
        let mut log = EventLog::new();
        for _ in 0..=MAX_EVENTS {
            log.push(Event::of_data(5, EV_IPL, Vec::new()));
        }
        assert_eq!(
            EventLog::parse(&log.to_bytes()),
            Err(EventLogError::TooManyEvents)
        );
        assert_eq!(
            EventLog::parse(&vec![0u8; MAX_LOG_LEN + 1]),
            Err(EventLogError::TooLarge(MAX_LOG_LEN + 1))
        );
    }

    #[test]
    fn test_parse_two_bank_log_keeps_sha256() {
        // A log from firmware with SHA-1 and SHA-256 banks.
        let mut spec = SPEC_ID_SIGNATURE.to_vec();
        spec.extend([0, 0, 0, 0, 0, 2, 0, 2]);
        spec.extend(2u32.to_le_bytes());
        spec.extend([0x04, 0, 20, 0, 0x0b, 0, 32, 0, 0]);
        let mut bytes = vec![0, 0, 0, 0, 3, 0, 0, 0];
        bytes.extend([0u8; 20]);
        bytes.extend((spec.len() as u32).to_le_bytes());
        bytes.extend(&spec);
        bytes.extend(7u32.to_le_bytes());
        bytes.extend(EV_IPL.to_le_bytes());
        bytes.extend(2u32.to_le_bytes());
        bytes.extend([0x04, 0]);
        bytes.extend([1u8; 20]);
        bytes.extend([0x0b, 0]);
        bytes.extend([2u8; 32]);
        bytes.extend(3u32.to_le_bytes());
        bytes.extend(b"abc");
        let log = EventLog::parse(&bytes).expect("two banks");
        assert_eq!(
            log.events,
            vec![Event {
                pcr: 7,
                event_type: EV_IPL,
                digest: [2; 32],
                data: b"abc".to_vec()
            }]
        );
    }
}
